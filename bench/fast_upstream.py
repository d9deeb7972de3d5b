"""A fast local OpenAI-compatible upstream for the benchmark.

One asyncio HTTP/1.1 server on 127.0.0.1 that responds to every POST with
a fixed chat completion:

- a JSON body with `usage` when the request body does not contain
  `"stream": true`;
- otherwise an SSE stream of `--events` content chunks, `--gap-ms` apart,
  then a usage chunk and `data: [DONE]`. Each content chunk carries the
  time it was written as `ts=<CLOCK_MONOTONIC ns>;` in its text, so a
  client on the same host can compute each event's delivery delay.

The first event is written at once, so `--gap-ms 10000` keeps thousands
of streams open cheaply, each sending one event every 10 s until the
client leaves.

    python bench/fast_upstream.py --port 18000 [--events 20 --gap-ms 5]

Prints `listening PORT` on stdout once it accepts connections.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import socket
import time

STREAM_FLAG = re.compile(rb'"stream"\s*:\s*true')
MODEL = "gpt-4o-mini"
USAGE = {"prompt_tokens": 250, "completion_tokens": 12, "total_tokens": 262}
MAX_HEADER_BYTES = 64 * 1024

JSON_BODY = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello! How can I help?"},
                "finish_reason": "stop",
            }
        ],
        "usage": USAGE,
    },
    separators=(",", ":"),
).encode()

JSON_RESPONSE = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
    b"content-length: %d\r\n\r\n%s" % (len(JSON_BODY), JSON_BODY)
)
SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
    b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n"
)


def _chunk(event: dict | str) -> bytes:
    """Frame one SSE event as one HTTP/1.1 chunk."""
    data = event if isinstance(event, str) else json.dumps(event, separators=(",", ":"))
    payload = b"data: " + data.encode() + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(payload), payload)


def _content_event(text: str, *, first: bool) -> bytes:
    delta = {"role": "assistant", "content": text} if first else {"content": text}
    return _chunk(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": MODEL,
            "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
        }
    )


STOP_EVENT = _chunk(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": MODEL,
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
    }
)
USAGE_EVENT = _chunk(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": MODEL,
        "choices": [],
        "usage": USAGE,
    }
)
END = _chunk("[DONE]") + b"0\r\n\r\n"


class Connection(asyncio.Protocol):
    """One client connection: parse requests and respond to them in order."""

    def __init__(self, events: int, gap_s: float) -> None:
        self.events = events
        self.gap_s = gap_s
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.streaming: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.streaming is not None:
            self.streaming.cancel()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.streaming is None:
            request = self._next_request()
            if request is None:
                return
            self._respond(request)

    def _next_request(self) -> bytes | None:
        """Remove one complete request from the buffer and return its body."""
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buffer) > MAX_HEADER_BYTES:
                self._fail(b"431 Request Header Fields Too Large")
            return None
        head = bytes(self.buffer[:end]).lower()
        start = end + 4
        if b"transfer-encoding: chunked" in head:
            return self._chunked_body(start)
        match = re.search(rb"\r\ncontent-length:\s*(\d+)", head)
        length = int(match.group(1)) if match else 0
        if len(self.buffer) < start + length:
            return None
        body = bytes(self.buffer[start : start + length])
        del self.buffer[: start + length]
        return body

    def _chunked_body(self, start: int) -> bytes | None:
        body = bytearray()
        position = start
        while True:
            line_end = self.buffer.find(b"\r\n", position)
            if line_end < 0:
                return None
            size = int(bytes(self.buffer[position:line_end]).split(b";")[0], 16)
            chunk_start = line_end + 2
            if size == 0:
                # No trailers are expected: the last chunk ends with CRLF.
                if len(self.buffer) < chunk_start + 2:
                    return None
                del self.buffer[: chunk_start + 2]
                return bytes(body)
            if len(self.buffer) < chunk_start + size + 2:
                return None
            body += self.buffer[chunk_start : chunk_start + size]
            position = chunk_start + size + 2

    def _respond(self, body: bytes) -> None:
        assert self.transport is not None
        if STREAM_FLAG.search(body) is None:
            self.transport.write(JSON_RESPONSE)
            return
        self.streaming = asyncio.ensure_future(self._stream())

    async def _stream(self) -> None:
        transport = self.transport
        assert transport is not None
        try:
            transport.write(SSE_HEAD)
            for index in range(self.events):
                if index:
                    await asyncio.sleep(self.gap_s)
                if transport.is_closing():
                    return
                text = f"ts={time.monotonic_ns()}; "
                transport.write(_content_event(text, first=index == 0))
            transport.write(STOP_EVENT + USAGE_EVENT + END)
        finally:
            self.streaming = None
        if self.buffer:
            self.data_received(b"")

    def _fail(self, status: bytes) -> None:
        assert self.transport is not None
        self.transport.write(b"HTTP/1.1 " + status + b"\r\ncontent-length: 0\r\n\r\n")
        self.transport.close()


async def serve(port: int, events: int, gap_s: float) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: Connection(events, gap_s), "127.0.0.1", port, backlog=4096
    )
    print(f"listening {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--port", type=int, default=0, help="TCP port on 127.0.0.1 (0: any free port)"
    )
    parser.add_argument(
        "--events", type=int, default=20, help="content events per stream"
    )
    parser.add_argument(
        "--gap-ms", type=float, default=5.0, help="milliseconds between events"
    )
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.events, args.gap_ms / 1000))


if __name__ == "__main__":
    main()
