"""Hold thousands of slow SSE streams open through Envoy, over HTTP/2.

The client multiplexes many streams on each HTTP/2 (h2c prior knowledge)
connection to Envoy. With one HTTP/1.1 connection per stream, Envoy would
need a descriptor for each client connection and each upstream connection,
and 10,000 streams would pass this machine's hard limit of 20,000 open files
per process. The ext_proc server receives one gRPC stream per HTTP request
whichever protocol the client speaks.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events

STREAMS_PER_CONNECTION = 100


@dataclass
class _Stream:
    status: int = 0
    first_event: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    ended: bool = False


class H2Client:
    """One HTTP/2 connection carrying up to STREAMS_PER_CONNECTION streams."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.streams: dict[int, _Stream] = {}
        self._connection = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        )
        self._pending: dict[int, bytes] = {}
        """Request body bytes that wait for Envoy's flow-control window."""
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reading: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(
            "127.0.0.1", self.port
        )
        self._connection.initiate_connection()
        # A large connection window, so that idle streams never stall others.
        self._connection.increment_flow_control_window(2**30)
        self._flush()
        self._reading = asyncio.ensure_future(self._read())

    def _flush(self) -> None:
        assert self._writer is not None
        data = self._connection.data_to_send()
        if data:
            self._writer.write(data)

    async def _read(self) -> None:
        assert self._reader is not None
        while True:
            data = await self._reader.read(65536)
            if not data:
                break
            for event in self._connection.receive_data(data):
                self._on_event(event)
            self._send_pending()
            self._flush()
        for stream in self.streams.values():
            if not stream.first_event.done():
                stream.first_event.set_exception(ConnectionError("connection closed"))

    def _on_event(self, event: h2.events.Event) -> None:
        stream = self.streams.get(getattr(event, "stream_id", 0) or 0)
        if isinstance(event, h2.events.ResponseReceived) and stream is not None:
            for name, value in event.headers:
                if name == ":status":
                    stream.status = int(value)
        elif isinstance(event, h2.events.DataReceived) and stream is not None:
            self._connection.acknowledge_received_data(
                event.flow_controlled_length, event.stream_id
            )
            if event.data and not stream.first_event.done():
                stream.first_event.set_result(None)
        elif (
            isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset))
            and stream is not None
        ):
            stream.ended = True
            if not stream.first_event.done():
                stream.first_event.set_exception(
                    ConnectionError(f"stream ended, status {stream.status}")
                )

    async def open_stream(self, path: str, body: bytes, token: str) -> _Stream:
        stream_id = self._connection.get_next_available_stream_id()
        stream = _Stream()
        self.streams[stream_id] = stream
        self._connection.send_headers(
            stream_id,
            [
                (":method", "POST"),
                (":path", path),
                (":scheme", "http"),
                (":authority", f"127.0.0.1:{self.port}"),
                ("content-type", "application/json"),
                ("authorization", f"Bearer {token}"),
                ("content-length", str(len(body))),
            ],
        )
        self._pending[stream_id] = body
        self._send_pending()
        self._flush()
        return stream

    def _send_pending(self) -> None:
        """Send as much of each waiting body as the flow-control windows allow."""
        for stream_id, body in list(self._pending.items()):
            window = self._connection.local_flow_control_window(stream_id)
            size = min(window, len(body), self._connection.max_outbound_frame_size)
            if size <= 0:
                continue
            last = size == len(body)
            self._connection.send_data(stream_id, body[:size], end_stream=last)
            if last:
                del self._pending[stream_id]
            else:
                self._pending[stream_id] = body[size:]

    def open_count(self) -> int:
        return sum(1 for s in self.streams.values() if s.status == 200 and not s.ended)

    def ended_count(self) -> int:
        """Return the streams that had their first event and then ended or were reset."""
        return sum(
            1 for s in self.streams.values() if s.ended and s.first_event.done()
            and s.first_event.exception() is None
        )  # fmt: skip

    async def close(self) -> None:
        if self._writer is not None:
            self._connection.close_connection()
            self._flush()
            self._writer.close()
        if self._reading is not None:
            self._reading.cancel()


class StreamHolder:
    """Open streams in steps and keep them open until `close`."""

    def __init__(self, port: int, path: str, body: bytes, token: str) -> None:
        self.port, self.path, self.body, self.token = port, path, body, token
        self.clients: list[H2Client] = []
        self.failed = 0

    async def grow_to(self, total: int, *, deadline_s: float) -> float:
        """Open streams until `total` were tried or the deadline passed; return seconds taken.

        Streams go out one connection at a time: the connection's streams
        are sent together, and the next connection starts once each of
        them has its first event, failed or timed out.
        """
        started = time.monotonic()
        deadline = started + deadline_s

        async def one(client: H2Client) -> None:
            stream = await client.open_stream(self.path, self.body, self.token)
            try:
                await asyncio.wait_for(
                    stream.first_event, max(0.0, deadline - time.monotonic())
                )
            except (TimeoutError, ConnectionError):
                self.failed += 1

        tried = sum(len(c.streams) for c in self.clients)
        while tried < total and time.monotonic() < deadline:
            client = self.clients[-1] if self.clients else None
            if client is None or len(client.streams) >= STREAMS_PER_CONNECTION:
                client = H2Client(self.port)
                await client.connect()
                self.clients.append(client)
            batch = min(STREAMS_PER_CONNECTION - len(client.streams), total - tried)
            await asyncio.gather(*(one(client) for _ in range(batch)))
            tried += batch
        return time.monotonic() - started

    def open_count(self) -> int:
        return sum(client.open_count() for client in self.clients)

    def ended_count(self) -> int:
        return sum(client.ended_count() for client in self.clients)

    async def close(self) -> None:
        for client in self.clients:
            await client.close()
        self.clients = []
