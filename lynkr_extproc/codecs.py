"""Incremental decoders for compressed response bodies.

The ext_proc removes `accept-encoding` towards the upstream, so upstreams
normally respond uncompressed. An upstream that compresses anyway is still
metered: its body is decoded here for parsing only, and the client gets
the original bytes.
"""

from __future__ import annotations

import zlib
from typing import Iterator, Protocol

import brotli
import zstandard


class Decoder(Protocol):
    def decompress(self, data: bytes) -> bytes: ...


class _Identity:
    def decompress(self, data: bytes) -> bytes:
        return data


class _Brotli:
    def __init__(self) -> None:
        self._decoder = brotli.Decompressor()

    def decompress(self, data: bytes) -> bytes:
        return self._decoder.process(data)


def decoder_for(content_encoding: str) -> Decoder | None:
    """Return a decoder for a Content-Encoding value, None if unsupported."""
    encoding = content_encoding.strip().lower()
    if encoding in ("", "identity"):
        return _Identity()
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        return zlib.decompressobj()
    if encoding == "br":
        return _Brotli()
    if encoding == "zstd":
        return zstandard.ZstdDecompressor().decompressobj()
    return None


PIECE_BYTES = 1024 * 1024


def decompress_pieces(decoder: Decoder, data: bytes, limit: int) -> Iterator[bytes]:
    """Decompress `data` lazily in pieces of at most 1 MiB, stopping after `limit` bytes.

    zlib stops at each piece's size itself, so memory stays bounded; for
    brotli and zstd the output of one chunk is produced at once and cut.
    """
    if isinstance(decoder, _ZLIB_DECOMPRESS):
        produced = 0
        pending = data
        while pending and produced < limit:
            piece = decoder.decompress(pending, min(PIECE_BYTES, limit - produced))
            pending = decoder.unconsumed_tail
            if not piece:
                break
            produced += len(piece)
            yield piece
        return
    output = decoder.decompress(data)
    yield from (output[i : i + PIECE_BYTES] for i in range(0, min(len(output), limit), PIECE_BYTES))


_ZLIB_DECOMPRESS = type(zlib.decompressobj())
