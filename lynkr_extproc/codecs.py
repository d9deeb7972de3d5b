"""Incremental decoders for compressed response bodies.

The ext_proc removes `accept-encoding` towards the upstream, so upstreams
normally respond uncompressed. An upstream that compresses anyway is still
metered: its body is decoded here for parsing only, and the client gets
the original bytes.
"""

from __future__ import annotations

import zlib
from typing import Protocol

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
