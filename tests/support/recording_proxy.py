"""An HTTP proxy on 127.0.0.1 that forwards requests unchanged and records them.

Placed in front of Envoy, it shows what a client sent. Placed between
Envoy and a model server, it shows what lynkr-extproc sent upstream and
what the upstream returned. Response bodies are relayed chunk by chunk as
they arrive, so a streamed response stays streamed.
"""

from __future__ import annotations

import http.client
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self

from .upstream import Received

HOP_BY_HOP_HEADERS = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
    "te", "trailer", "transfer-encoding", "upgrade",
}  # fmt: skip

# Response headers that BaseHTTPRequestHandler.send_response writes itself.
HANDLER_SETS_HEADERS = {"date", "server"}


@dataclass
class Exchange:
    """One forwarded request with the response status and body relayed for it."""

    request: Received
    status: int = 0
    """0 until the target's response headers arrive."""
    body: bytearray = field(default_factory=bytearray)
    """The response body relayed so far. It is complete before the client
    receives the end of the response."""


class RecordingProxy:
    """Forward GET, HEAD and POST requests to `target` and keep each exchange."""

    def __init__(self, target: str, *, timeout_s: float = 120.0) -> None:
        host, _, port = target.removeprefix("http://").partition(":")
        self.target_host = host
        self.target_port = int(port)
        self.timeout_s = timeout_s
        self.exchanges: list[Exchange] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                proxy._forward(self)

            def do_HEAD(self) -> None:
                proxy._forward(self)

            def do_POST(self) -> None:
                proxy._forward(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def received(self) -> list[Received]:
        """Return the forwarded requests, in the order they arrived."""
        return [exchange.request for exchange in self.exchanges]

    def _forward(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("content-length") or 0)
        body = handler.rfile.read(length) if length else b""
        headers = {
            name: value
            for name, value in handler.headers.items()
            if name.lower() not in HOP_BY_HOP_HEADERS
        }
        lowered = {name.lower(): value for name, value in headers.items()}
        exchange = Exchange(Received(handler.command, handler.path, lowered, body))
        self.exchanges.append(exchange)

        connection = http.client.HTTPConnection(
            self.target_host, self.target_port, timeout=self.timeout_s
        )
        try:
            connection.request(
                handler.command, handler.path, body=body, headers=headers
            )
            reply = connection.getresponse()
            exchange.status = reply.status
            handler.send_response(reply.status)
            if handler.command == "HEAD":
                # A HEAD response has no body, so content-length is copied too.
                skip = HOP_BY_HOP_HEADERS | HANDLER_SETS_HEADERS
                self._copy_headers(reply, handler, skip=skip)
                handler.end_headers()
                return
            # The body is relayed chunked, so content-length is not copied.
            skip = HOP_BY_HOP_HEADERS | HANDLER_SETS_HEADERS | {"content-length"}
            self._copy_headers(reply, handler, skip=skip)
            handler.send_header("transfer-encoding", "chunked")
            handler.end_headers()
            while chunk := reply.read1(65536):
                exchange.body += chunk
                handler.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                handler.wfile.flush()
            handler.wfile.write(b"0\r\n\r\n")
            handler.wfile.flush()
        finally:
            connection.close()

    @staticmethod
    def _copy_headers(
        reply: http.client.HTTPResponse,
        handler: BaseHTTPRequestHandler,
        *,
        skip: set[str],
    ) -> None:
        for name, value in reply.getheaders():
            if name.lower() not in skip:
                handler.send_header(name, value)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
