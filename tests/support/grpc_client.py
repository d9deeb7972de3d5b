"""Drive the real ext_proc server over gRPC, message by message.

Builders make the ProcessingRequest messages Envoy would send, so tests
can cut a stream anywhere, cancel it, or send messages out of order.
"""

from __future__ import annotations

import json
import queue
from typing import Any, Iterator

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as ext_proc
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as ext_proc_grpc

_END = object()


def _header_map(headers: dict[str, str]) -> base_pb2.HeaderMap:
    return base_pb2.HeaderMap(
        headers=[base_pb2.HeaderValue(key=k, raw_value=v.encode()) for k, v in headers.items()]
    )


def request_headers(path: str, headers: dict[str, str], *, method: str = "POST", end_of_stream: bool = False) -> ext_proc.ProcessingRequest:
    full = {":method": method, ":path": path, ":authority": "gateway", ":scheme": "http", **headers}
    return ext_proc.ProcessingRequest(
        request_headers=ext_proc.HttpHeaders(headers=_header_map(full), end_of_stream=end_of_stream)
    )


def request_body(body: dict[str, Any] | bytes, *, end_of_stream: bool = True) -> ext_proc.ProcessingRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return ext_proc.ProcessingRequest(request_body=ext_proc.HttpBody(body=raw, end_of_stream=end_of_stream))


def response_headers(status: int = 200, content_type: str = "application/json", *, end_of_stream: bool = False, **extra: str) -> ext_proc.ProcessingRequest:
    headers = {":status": str(status), "content-type": content_type, **extra}
    return ext_proc.ProcessingRequest(
        response_headers=ext_proc.HttpHeaders(headers=_header_map(headers), end_of_stream=end_of_stream)
    )


def response_body(chunk: bytes, *, end_of_stream: bool = False) -> ext_proc.ProcessingRequest:
    return ext_proc.ProcessingRequest(response_body=ext_proc.HttpBody(body=chunk, end_of_stream=end_of_stream))


class ExtProcStream:
    """One ext_proc stream: `send` a message and get the server's reply."""

    def __init__(self, channel: grpc.Channel) -> None:
        self._outgoing: queue.Queue[Any] = queue.Queue()
        self._call = ext_proc_grpc.ExternalProcessorStub(channel).Process(self._requests())
        self._replies: Iterator[ext_proc.ProcessingResponse] = iter(self._call)

    def _requests(self) -> Iterator[ext_proc.ProcessingRequest]:
        while True:
            item = self._outgoing.get()
            if item is _END:
                return
            yield item

    def send(self, message: ext_proc.ProcessingRequest) -> ext_proc.ProcessingResponse:
        self._outgoing.put(message)
        return next(self._replies)

    def close(self) -> None:
        """Half-close the stream as Envoy does after the last message."""
        self._outgoing.put(_END)
        for _ in self._replies:
            pass

    def cancel(self) -> None:
        """Reset the stream, as Envoy does when the client disconnects."""
        self._call.cancel()


def headers_of(mutation: ext_proc.HeaderMutation) -> dict[str, bytes]:
    return {option.header.key: option.header.raw_value for option in mutation.set_headers}


def immediate_json(reply: ext_proc.ProcessingResponse) -> tuple[int, dict[str, bytes], Any]:
    immediate = reply.immediate_response
    return immediate.status.code, headers_of(immediate.headers), json.loads(immediate.body)
