"""Read an upstream response: meter its usage, rewrite it for the client.

Three cases, decided from the response headers:

- pass-through: the client gets the upstream's bytes unchanged (byte for
  byte), and only usage is read;
- usage stripping: a streamed OpenAI chat response whose usage chunk was
  injected by lynkr gets that one event removed;
- rewriting: the upstream speaks another API (translation) or another
  framing (Bedrock's event stream): every event is metered in the
  upstream's API, then re-encoded in the client's.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Iterator, Mapping

from . import codecs
from .framing import Framer, framer_for
from .pricing import Usage
from .sse import Event

logger = logging.getLogger(__name__)

MAX_RESPONSE_JSON_BYTES = 64 * 1024 * 1024
MAX_DECODED_BYTES = MAX_RESPONSE_JSON_BYTES + 1
"""Decompressed bytes read per response; more is forwarded but not metered."""


class SSEReframer:
    """Re-encodes events of another framing as server-sent events, same API."""

    def feed(self, event: Event) -> bytes:
        if event.event.startswith("exception:"):
            message = _exception_message(event.data)
            payload = {"type": "error", "error": {"type": "api_error", "message": message}}
            return _sse("error", json.dumps(payload, separators=(",", ":")))
        document = _json(event.data)
        kind = document.get("type") if isinstance(document, dict) else None
        return _sse(kind if isinstance(kind, str) else event.event, event.data)

    def finish(self, *, error: str | None = None) -> bytes:
        if error is None:
            return b""
        payload = {"type": "error", "error": {"type": "api_error", "message": error}}
        return _sse("error", json.dumps(payload, separators=(",", ":")))


def _sse(kind: str, data: str) -> bytes:
    lines = "".join(f"data: {line}\n" for line in data.split("\n"))
    return f"event: {kind}\n{lines}\n".encode()


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _exception_message(data: str) -> str:
    document = _json(data)
    if isinstance(document, dict) and isinstance(document.get("message"), str):
        return document["message"]
    return data[:500]


class ResponseReader:
    def __init__(
        self,
        upstream_api: Any,
        client_api: Any,
        translation: Any,
        *,
        strip_usage: bool,
        request_id: str,
    ) -> None:
        self.upstream_api = upstream_api
        self.client_api = client_api
        self.translation = translation
        self.strip_usage = strip_usage and translation is None
        self.request_id = request_id
        self.status = 0
        self.streaming = False
        self.rewrite = False
        self._decoder: codecs.Decoder | None = None
        self._framer: Framer | None = None
        self._translator: Any = None
        self.meter: Any = None
        self._json = bytearray()
        self._json_overflow = False
        self._decoded = 0

    # -- headers -----------------------------------------------------------

    def on_headers(self, headers: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
        """Prepare for the body; return response headers to set and to remove."""
        self.status = _int(headers.get(":status"))
        content_type = headers.get("content-type", "").lower()
        encoding = headers.get("content-encoding", "").strip().lower()
        self._decoder = codecs.decoder_for(encoding)
        if self._decoder is None:
            logger.warning(
                "request %s: unsupported content-encoding %r, usage will be estimated",
                self.request_id, encoding,
            )
        compressed = encoding not in ("", "identity")
        if compressed:
            self.strip_usage = False
        reframe = content_type.startswith("application/vnd.amazon.eventstream")
        self.rewrite = (self.translation is not None or reframe) and not compressed
        if compressed and (self.translation is not None or reframe):
            logger.warning(
                "request %s: the upstream compressed a response that must be rewritten; "
                "it is forwarded as is", self.request_id,
            )
        self._framer = framer_for(content_type, keep_raw=self.strip_usage)
        self.streaming = self._framer is not None
        if self.streaming:
            self.meter = self.upstream_api.new_meter()
            if self.rewrite:
                self._translator = self.translation.stream() if self.translation else SSEReframer()
        if not self.rewrite:
            return {}, []
        kind = "text/event-stream" if self.streaming else "application/json"
        return {"content-type": kind}, ["content-length"]

    # -- body --------------------------------------------------------------

    def on_body(self, chunk: bytes, *, end: bool) -> bytes | None:
        """Read one body chunk; return the bytes the client gets instead, if changed."""
        if self.streaming:
            return self._on_stream(b"".join(self._decode(chunk)), end=end)
        for plain in self._decode(chunk):
            self._buffer_json(plain)
        if not self.rewrite:
            return None
        if not end:
            return b""
        return self._rewrite_json()

    def _buffer_json(self, plain: bytes) -> None:
        if not plain or self._json_overflow:
            return
        if len(self._json) + len(plain) > MAX_RESPONSE_JSON_BYTES:
            self._json_overflow = True
            self._json.clear()
            logger.warning(
                "request %s: JSON response above %d bytes is not parsed; usage is estimated",
                self.request_id, MAX_RESPONSE_JSON_BYTES,
            )
            return
        self._json += plain

    def _decode(self, chunk: bytes) -> Iterator[bytes]:
        """Yield the chunk decompressed, in pieces of bounded size."""
        if self._decoder is None or not chunk:
            if self._decoder is not None:
                yield chunk
            return
        try:
            for piece in codecs.decompress_pieces(self._decoder, chunk, MAX_DECODED_BYTES - self._decoded):
                self._decoded += len(piece)
                yield piece
        except Exception as exc:  # any codec error: keep forwarding, estimate usage
            logger.warning("request %s: response body cannot be decoded: %s", self.request_id, exc)
            self._decoder = None
            return
        if self._decoded >= MAX_DECODED_BYTES:
            logger.warning(
                "request %s: decompressed response above %d bytes; the rest is not metered",
                self.request_id, MAX_DECODED_BYTES,
            )
            self._decoder = None
            self._json_overflow = True
            self._json.clear()

    def _on_stream(self, chunk: bytes, *, end: bool) -> bytes | None:
        framer, meter = self._framer, self.meter
        assert framer is not None and meter is not None
        out: list[bytes] = []
        for event, raw in framer.feed_blocks(chunk):
            out.append(self._handle_event(event, raw))
        if end:
            pending = framer.pending_event()
            tail = framer.close()
            out.append(self._handle_event(pending, tail))
            if self.rewrite:
                # A clean end of body: translators notice a stream cut before
                # its last event themselves and close it with an error event.
                out.append(self._translator.finish())
        if not (self.rewrite or self.strip_usage):
            return None
        return b"".join(out)

    def _handle_event(self, event: Event | None, raw: bytes) -> bytes:
        if event is None:
            return b"" if self.rewrite else raw
        try:
            self.meter.feed(event)
        except Exception as exc:  # a malformed upstream event is skipped, never fatal
            self._unreadable("meter", exc)
        if self.rewrite:
            try:
                return self._translator.feed(event)
            except Exception as exc:
                self._unreadable("translation", exc)
                return b""
        try:
            if self.strip_usage and self.meter.is_usage_only(event):
                return b""
        except Exception as exc:
            self._unreadable("meter", exc)
        return raw

    def _unreadable(self, what: str, exc: Exception) -> None:
        self.meter.flags.add("unreadable_event")
        logger.warning("request %s: upstream event skipped by the %s: %r", self.request_id, what, exc)

    def _rewrite_json(self) -> bytes:
        document = _json(bytes(self._json).decode("utf-8", "replace"))
        if document is None:
            document = bytes(self._json).decode("utf-8", "replace")
        if self.translation is None:
            return bytes(self._json)
        if self.status >= 400 or not isinstance(document, dict):
            translated = self.translation.error(self.status, document)
        else:
            translated = self.translation.response(document)
        return json.dumps(translated, ensure_ascii=False, separators=(",", ":")).encode()

    # -- usage -------------------------------------------------------------

    def provider_cost(self) -> int | None:
        """Return the upstream's own reported charge in nano-dollars, if any."""
        if self.streaming:
            return getattr(self.meter, "provider_cost", None)
        reader = getattr(self.upstream_api, "provider_cost_from_json", None)
        if reader is None or not self._json:
            return None
        return reader(_json(bytes(self._json).decode("utf-8", "replace")))

    def observed(self, flags: set[str]) -> tuple[Usage | None, bool, bool, int]:
        """Return (usage reported, terminal event seen, failed, text characters)."""
        if self.streaming and self.meter is not None:
            flags.update(self.meter.flags)
            return self.meter.usage, self.meter.finished, self.meter.failed, self.meter.text_chars
        if self._json_overflow:
            flags.add("response_too_large")
            return None, True, False, 0
        if not self._json:
            return None, False, False, 0
        document = _json(bytes(self._json).decode("utf-8", "replace"))
        if document is None:
            flags.add("unparsable_response")
            return None, True, False, len(self._json) // 2
        try:
            usage = self.upstream_api.usage_from_json(document, flags)
            chars = self.upstream_api.text_chars_from_json(document)
        except Exception as exc:  # a malformed usage object is flagged, never fatal
            logger.warning("request %s: response usage unreadable: %r", self.request_id, exc)
            flags.add("unreadable_usage")
            return None, True, False, len(self._json) // 2
        return usage, True, False, chars


def _int(text: str | None) -> int:
    try:
        return int(text or 0)
    except ValueError:
        return 0
