"""Incremental server-sent events decoder, after the WHATWG HTML spec.

Bytes become lines and lines become events. A line ends at CR, LF or
CRLF; a CR at the end of one chunk may be followed by the LF of the next,
so that LF is dropped. CR and LF never occur inside a multi-byte UTF-8
sequence, so lines are split on bytes and each whole line is decoded,
which keeps a character split across chunks intact.

An event whose size passes `max_event_bytes` is dropped with a warning
while framing continues, so one huge event costs bounded memory and a
later usage event is still found.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

logger = logging.getLogger(__name__)

DEFAULT_MAX_EVENT_BYTES = 8 * 1024 * 1024
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class Event:
    """One dispatched event."""

    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None


class SSEDecoder:
    """Feed body chunks, receive complete events."""

    def __init__(
        self,
        *,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        keep_raw: bool = False,
    ) -> None:
        self._max_event_bytes = max_event_bytes
        self._keep_raw = keep_raw
        self._line = bytearray()
        self._line_length = 0
        """Bytes of the current line, counted even while they are dropped."""
        self._raw = bytearray()
        self._bom_pending = b""
        self._bom_checked = False
        self._skip_lf = False
        self._oversized = False
        self._reset_event()
        self.last_event_id = ""
        self.dropped_events = 0

    def _reset_event(self) -> None:
        self._event_type = ""
        self._data: list[str] = []
        self._data_size = 0
        self._retry: int | None = None
        self._id_set = False

    def feed(self, chunk: bytes) -> list[Event]:
        """Decode `chunk` and return the events it completes."""
        return [event for event, _ in self.feed_blocks(chunk) if event is not None]

    def feed_blocks(self, chunk: bytes) -> list[tuple[Event | None, bytes]]:
        """Decode `chunk` and return each block it completes with its bytes.

        A block is everything up to and including a blank line. Blocks
        that dispatch no event (comments, fields without data) come with
        None. The bytes are empty unless the decoder keeps raw bytes.
        """
        blocks: list[tuple[Event | None, bytes]] = []
        if not self._bom_checked:
            chunk = self._strip_bom(chunk)
        start = 0
        size = len(chunk)
        if self._skip_lf and size and chunk[0] == 0x0A:
            start = 1
            if self._keep_raw:
                self._raw += b"\n"
        if size:
            self._skip_lf = False
        while start < size:
            cr = chunk.find(b"\r", start)
            lf = chunk.find(b"\n", start)
            if cr < 0 and lf < 0:
                self._append(chunk[start:])
                break
            end = lf if cr < 0 or (0 <= lf < cr) else cr
            self._append(chunk[start:end])
            step = 1
            if chunk[end] == 0x0D:
                if end + 1 < size and chunk[end + 1] == 0x0A:
                    step = 2
                elif end + 1 == size:
                    self._skip_lf = True
            if self._keep_raw:
                self._raw += chunk[end : end + step]
            block = self._end_line()
            if block is not None:
                blocks.append(block)
            start = end + step
        if self._oversized and self._raw:
            # An oversized event is never dropped from the output, so its
            # bytes go on as they arrive instead of being held until it ends.
            blocks.append((None, bytes(self._raw)))
            self._raw.clear()
        return blocks

    def pending_event(self) -> Event | None:
        """Return None: per the spec, an event without its blank line is dropped."""
        return None

    def _strip_bom(self, chunk: bytes) -> bytes:
        """Drop one UTF-8 byte order mark at the start of the stream, as the spec requires.

        The mark may be split across chunks; its bytes stay in the raw output.
        """
        head = self._bom_pending + chunk
        if len(head) < len(_BOM) and _BOM.startswith(head):
            self._bom_pending = head
            return b""
        self._bom_checked = True
        self._bom_pending = b""
        if head.startswith(_BOM):
            if self._keep_raw:
                self._raw += _BOM
            return head[len(_BOM) :]
        return head

    def close(self) -> bytes:
        """End the stream and return the raw bytes of an unfinished block.

        Per the spec an event without its closing blank line is dropped.
        """
        raw = self._bom_pending + bytes(self._raw)
        self._bom_pending = b""
        self._line.clear()
        self._line_length = 0
        self._raw.clear()
        self._reset_event()
        return raw

    def _append(self, piece: bytes) -> None:
        if self._keep_raw:
            self._raw += piece
        self._line_length += len(piece)
        if self._oversized:
            return
        self._line += piece
        if len(self._line) + self._data_size > self._max_event_bytes:
            self._oversized = True
            self._line.clear()

    def _end_line(self) -> tuple[Event | None, bytes] | None:
        line = bytes(self._line)
        length = self._line_length
        self._line.clear()
        self._line_length = 0
        if length:
            if not self._oversized:
                self._process_field(line.decode("utf-8", errors="replace"), length)
            return None
        if self._oversized:
            logger.warning(
                "sse event dropped: larger than %d bytes", self._max_event_bytes
            )
            self.dropped_events += 1
            self._oversized = False
            self._reset_event()
            raw = bytes(self._raw)
            self._raw.clear()
            return None, raw
        return self._dispatch()

    def _process_field(self, line: str, length: int) -> None:
        if line.startswith(":"):
            return
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
            self._data_size += length + 1
        elif name == "event":
            self._event_type = value
        elif name == "id":
            if "\0" not in value:
                self.last_event_id = value
                self._id_set = True
        elif name == "retry":
            if value.isascii() and value.isdigit():
                self._retry = int(value)

    def _dispatch(self) -> tuple[Event | None, bytes]:
        raw = bytes(self._raw)
        self._raw.clear()
        if not self._data:
            self._reset_event()
            return None, raw
        event = Event(
            event=self._event_type or "message",
            data="\n".join(self._data),
            id=self.last_event_id or None,
            retry=self._retry,
        )
        self._reset_event()
        return event, raw
