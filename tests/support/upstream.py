"""An in-process HTTP upstream that replays recorded provider responses."""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "recorded"


@dataclass
class Reply:
    """One upstream response: sent as the given chunks, in order."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=lambda: {"content-type": "application/json"})
    chunks: list[bytes] = field(default_factory=list)
    chunk_delay_s: float = 0.0
    hang_after: bool = False
    """Keep the connection open after the chunks, until the client leaves."""

    @classmethod
    def fixture(cls, name: str, **changes: object) -> "Reply":
        """Load tests/fixtures/recorded/NAME.json and NAME.body."""
        meta = json.loads((FIXTURES / f"{name}.json").read_text())
        body = (FIXTURES / f"{name}.body").read_bytes()
        reply = cls(status=meta.get("status", 200), headers=dict(meta["headers"]), chunks=[body])
        for key, value in changes.items():
            setattr(reply, key, value)
        return reply

    @classmethod
    def json(cls, document: object, status: int = 200) -> "Reply":
        return cls(status=status, chunks=[json.dumps(document).encode()])

    @classmethod
    def sse(cls, chunks: list[bytes], **changes: object) -> "Reply":
        return cls(headers={"content-type": "text/event-stream"}, chunks=chunks, **changes)  # type: ignore[arg-type]


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


class ReplayUpstream:
    """Serve `Reply` objects chosen by a function of the received request."""

    def __init__(self, choose: Callable[[Received], Reply] | Reply | None = None) -> None:
        self.choose = choose or Reply.json({})
        self.received: list[Received] = []
        self.closed_early = threading.Event()
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                self._serve()

            def do_POST(self) -> None:
                self._serve()

            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                received = Received(
                    self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body
                )
                upstream.received.append(received)
                choose = upstream.choose
                reply = choose(received) if callable(choose) else choose
                self._send(reply)

            def _send(self, reply: Reply) -> None:
                self.send_response(reply.status)
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()
                try:
                    for chunk in reply.chunks:
                        if chunk:
                            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                            self.wfile.flush()
                        if reply.chunk_delay_s:
                            time.sleep(reply.chunk_delay_s)
                    if reply.hang_after:
                        self._wait_for_close()
                        return
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    upstream.closed_early.set()

            def _wait_for_close(self) -> None:
                self.connection.settimeout(30)
                try:
                    while self.connection.recv(1):
                        pass
                except (OSError, socket.timeout):
                    pass
                upstream.closed_early.set()
                self.close_connection = True

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "ReplayUpstream":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
