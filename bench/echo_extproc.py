"""The benchmark's floor: an ext_proc server that replies "continue" to everything.

It speaks the same phases as lynkr-extproc under the same Envoy
processing mode (request headers SEND, request body BUFFERED, response
headers SEND, response body BUFFERED) and sends the same `mode_override`
on response headers: STREAMED for `text/event-stream`, BUFFERED
otherwise. It reads only the content type and changes nothing, so the
time it adds is the cost of a Python grpc.aio ext_proc that does no work.
Messages sent by a filter in `observability_mode` get no reply, as the
protocol requires.

    python bench/echo_extproc.py --listen 127.0.0.1:18001

Prints `listening ADDRESS` on stdout once it serves.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator

import grpc
from envoy.extensions.filters.http.ext_proc.v3 import processing_mode_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as ext_proc
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as ext_proc_grpc

Mode = processing_mode_pb2.ProcessingMode
STREAMED = Mode(response_body_mode=Mode.STREAMED)
BUFFERED = Mode(response_body_mode=Mode.BUFFERED)


def _is_event_stream(headers: ext_proc.HttpHeaders) -> bool:
    for header in headers.headers.headers:
        if header.key.lower() == "content-type":
            value = header.raw_value.decode() if header.raw_value else header.value
            return value.lower().startswith("text/event-stream")
    return False


def reply(request: ext_proc.ProcessingRequest) -> ext_proc.ProcessingResponse:
    """Return the "continue" reply to one message from Envoy."""
    kind = request.WhichOneof("request")
    if kind == "request_headers":
        return ext_proc.ProcessingResponse(request_headers=ext_proc.HeadersResponse())
    if kind == "request_body":
        return ext_proc.ProcessingResponse(request_body=ext_proc.BodyResponse())
    if kind == "response_headers":
        response = ext_proc.ProcessingResponse(
            response_headers=ext_proc.HeadersResponse()
        )
        stream = _is_event_stream(request.response_headers)
        response.mode_override.CopyFrom(STREAMED if stream else BUFFERED)
        return response
    if kind == "response_body":
        return ext_proc.ProcessingResponse(response_body=ext_proc.BodyResponse())
    return ext_proc.ProcessingResponse(**{kind: ext_proc.TrailersResponse()})


class EchoProcessor(ext_proc_grpc.ExternalProcessorServicer):
    async def Process(
        self,
        request_iterator: AsyncIterator[ext_proc.ProcessingRequest],
        context: grpc.aio.ServicerContext,
    ) -> None:
        async for request in request_iterator:
            if not request.observability_mode:
                await context.write(reply(request))


async def serve(listen: str) -> None:
    # The same message size limits and port reuse setting as lynkr-extproc.
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", 128 * 1024 * 1024),
            ("grpc.max_send_message_length", 128 * 1024 * 1024),
            ("grpc.so_reuseport", 0),
        ]
    )
    ext_proc_grpc.add_ExternalProcessorServicer_to_server(EchoProcessor(), server)
    if server.add_insecure_port(listen) == 0:
        raise OSError(f"cannot listen on {listen}")
    await server.start()
    print(f"listening {listen}", flush=True)
    await server.wait_for_termination()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True, help="host:port of the gRPC server")
    args = parser.parse_args()
    asyncio.run(serve(args.listen))


if __name__ == "__main__":
    main()
