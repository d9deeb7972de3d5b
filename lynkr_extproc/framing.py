"""Split streamed response bodies into events, whatever their framing.

Every framer turns body chunks into (event, raw bytes) blocks like
`SSEDecoder.feed_blocks`, so that meters and translators read one Event
type for server-sent events, newline-delimited JSON (Ollama) and the
binary AWS event stream (Bedrock).
"""

from __future__ import annotations

import base64
import json
import logging
import struct
import zlib
from typing import Protocol

from .sse import DEFAULT_MAX_EVENT_BYTES, Event, SSEDecoder

logger = logging.getLogger(__name__)


class Framer(Protocol):
    def feed_blocks(self, chunk: bytes) -> list[tuple[Event | None, bytes]]: ...

    def pending_event(self) -> Event | None:
        """Return an unterminated last event that still counts, before `close`."""
        ...

    def close(self) -> bytes: ...


class NDJSONFramer:
    """One JSON document per line; each line becomes an Event of type "message"."""

    def __init__(self, *, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self._buffer = bytearray()
        self._max = max_event_bytes
        self._skipping = False

    def feed_blocks(self, chunk: bytes) -> list[tuple[Event | None, bytes]]:
        blocks: list[tuple[Event | None, bytes]] = []
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            if end < 0:
                self._append(chunk[start:])
                return blocks
            self._append(chunk[start : end + 1])
            line = bytes(self._buffer)
            self._buffer.clear()
            if self._skipping:
                self._skipping = False
                blocks.append((None, b""))
            else:
                text = line.strip().decode("utf-8", "replace")
                blocks.append((Event(data=text) if text else None, line))
            start = end + 1

    def _append(self, piece: bytes) -> None:
        if self._skipping:
            return
        self._buffer += piece
        if len(self._buffer) > self._max:
            logger.warning("ndjson line dropped: larger than %d bytes", self._max)
            self._buffer.clear()
            self._skipping = True

    def close(self) -> bytes:
        """Return an unterminated last line's bytes; it still counts as a line."""
        raw = bytes(self._buffer)
        self._buffer.clear()
        return raw

    def pending_event(self) -> Event | None:
        """Return the unterminated last line as an event, before `close`."""
        text = bytes(self._buffer).strip().decode("utf-8", "replace")
        return Event(data=text) if text else None


_PRELUDE = 12
_TRAILER = 4


class EventStreamFramer:
    """The binary `application/vnd.amazon.eventstream` framing of Bedrock.

    A message is: total length (4 bytes), headers length (4), prelude CRC32
    (4), headers, payload, message CRC32 (4), all big-endian. A message
    whose CRC does not match is logged and skipped, never metered. The
    event's type is its `:event-type` header (or `:exception-type`), and
    its data the payload as text; a Bedrock `chunk` wrapping base64 `bytes`
    is unwrapped, so InvokeModel streams yield the model's own events.
    """

    def __init__(self, *, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self._buffer = bytearray()
        self._max = max_event_bytes
        self.bad_messages = 0

    def feed_blocks(self, chunk: bytes) -> list[tuple[Event | None, bytes]]:
        self._buffer += chunk
        blocks: list[tuple[Event | None, bytes]] = []
        while len(self._buffer) >= _PRELUDE:
            total, headers_length, prelude_crc = struct.unpack(">III", self._buffer[:_PRELUDE])
            if zlib.crc32(self._buffer[:8]) != prelude_crc or total > self._max or total < _PRELUDE + _TRAILER:
                logger.warning("event stream prelude invalid; the rest of the stream is not metered")
                self.bad_messages += 1
                raw = bytes(self._buffer)
                self._buffer.clear()
                blocks.append((None, raw))
                return blocks
            if len(self._buffer) < total:
                return blocks
            message = bytes(self._buffer[:total])
            del self._buffer[:total]
            blocks.append((self._decode(message, headers_length), message))
        return blocks

    def _decode(self, message: bytes, headers_length: int) -> Event | None:
        (crc,) = struct.unpack(">I", message[-_TRAILER:])
        if zlib.crc32(message[:-_TRAILER]) != crc:
            logger.warning("event stream message failed its CRC check; not metered")
            self.bad_messages += 1
            return None
        if _PRELUDE + headers_length > len(message) - _TRAILER:
            logger.warning("event stream message has headers past its end; not metered")
            self.bad_messages += 1
            return None
        try:
            headers = _headers(message[_PRELUDE : _PRELUDE + headers_length])
        except (IndexError, struct.error):
            logger.warning("event stream message has malformed headers; not metered")
            self.bad_messages += 1
            return None
        payload = message[_PRELUDE + headers_length : -_TRAILER]
        kind = headers.get(":event-type") or headers.get(":exception-type") or "message"
        if headers.get(":message-type") == "exception":
            kind = "exception:" + kind
        data = payload.decode("utf-8", "replace")
        if kind == "chunk":
            data = _unwrap_chunk(data)
        return Event(event=kind, data=data)

    def pending_event(self) -> Event | None:
        return None

    def close(self) -> bytes:
        raw = bytes(self._buffer)
        self._buffer.clear()
        return raw


def _headers(raw: bytes) -> dict[str, str]:
    """Read event stream headers; only string values (type 7) are kept."""
    headers: dict[str, str] = {}
    position = 0
    sizes = {0: 0, 1: 0, 2: 1, 3: 2, 4: 4, 5: 8, 8: 8, 9: 16}
    while position < len(raw):
        name_length = raw[position]
        name = raw[position + 1 : position + 1 + name_length].decode("utf-8", "replace")
        position += 1 + name_length
        kind = raw[position]
        position += 1
        if kind in (6, 7):
            (length,) = struct.unpack(">H", raw[position : position + 2])
            value = raw[position + 2 : position + 2 + length]
            position += 2 + length
            if kind == 7:
                headers[name] = value.decode("utf-8", "replace")
        elif kind in sizes:
            position += sizes[kind]
        else:
            break
    return headers


def _unwrap_chunk(data: str) -> str:
    try:
        wrapped = json.loads(data)
        return base64.b64decode(wrapped["bytes"]).decode("utf-8", "replace")
    except (ValueError, KeyError, TypeError):
        return data


def framer_for(content_type: str, *, keep_raw: bool) -> Framer | None:
    """Return the framer of a streamed content type, None for a buffered body."""
    kind = content_type.split(";")[0].strip().lower()
    if kind == "text/event-stream":
        return SSEDecoder(keep_raw=keep_raw)
    if kind in ("application/x-ndjson", "application/jsonl", "application/ndjson"):
        return NDJSONFramer()
    if kind == "application/vnd.amazon.eventstream":
        return EventStreamFramer()
    return None


def encode_event_stream(event_type: str, payload: bytes) -> bytes:
    """Encode one event stream message, as Bedrock sends it (for tests and fixtures)."""
    headers = b""
    for name, value in ((":event-type", event_type), (":content-type", "application/json"), (":message-type", "event")):
        encoded = value.encode()
        headers += bytes([len(name)]) + name.encode() + b"\x07" + struct.pack(">H", len(encoded)) + encoded
    total = _PRELUDE + len(headers) + len(payload) + _TRAILER
    prelude = struct.pack(">II", total, len(headers))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    body = prelude + headers + payload
    return body + struct.pack(">I", zlib.crc32(body))
