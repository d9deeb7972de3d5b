"""The grpc.aio ext_proc server: a thin loop around StreamProcessor."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import AsyncIterator, Callable

import grpc
from envoy.service.ext_proc.v3 import external_processor_pb2 as ext_proc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as ext_proc_grpc

from .admin import AdminRuntime, start_admin
from .config import Config
from .gateway import Gateway
from .metrics import Metrics
from .attempt import AttemptProcessor, attempt_error, attempt_upstream
from .errors import ClientError, ProtocolError
from .processor import State, StreamProcessor
from .store import BudgetStore, open_store

logger = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 128 * 1024 * 1024


class ExternalProcessor(ext_proc_grpc.ExternalProcessorServicer):
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self._finishing: set[asyncio.Task[None]] = set()
        self.active_streams = 0

    async def Process(
        self,
        request_iterator: AsyncIterator[ext_proc.ProcessingRequest],
        context: grpc.aio.ServicerContext,
    ) -> None:
        processor = StreamProcessor(self.gateway)
        messages = aiter(request_iterator)
        self.active_streams += 1
        try:
            async for request in messages:
                if processor.state is State.REQUEST_HEADERS:
                    upstream = attempt_upstream(request)
                    if upstream is not None:
                        await self._attempt(upstream, request, messages, context)
                        return
                await context.write(await processor.handle(request))
        except ProtocolError as exc:
            logger.error("request %s: %s; closing the stream", processor.request_id or "-", exc)
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        finally:
            self.active_streams -= 1
            if processor.needs_finish:
                # A separate task, so that a cancelled stream still records spend.
                task = asyncio.ensure_future(self._finish(processor))
                self._finishing.add(task)
                task.add_done_callback(self._finishing.discard)

    async def _attempt(
        self,
        upstream: str,
        first: ext_proc.ProcessingRequest,
        rest: AsyncIterator[ext_proc.ProcessingRequest],
        context: grpc.aio.ServicerContext,
    ) -> None:
        """Serve one attempt of a fallback chain (an upstream filter's stream)."""
        attempt = AttemptProcessor(self.gateway.config, upstream, first)
        request = first
        while True:
            try:
                reply = await attempt.handle(request)
            except ClientError as error:
                await context.write(attempt_error(error))
                return
            await context.write(reply)
            try:
                request = await anext(rest)
            except StopAsyncIteration:
                return

    async def _finish(self, processor: StreamProcessor) -> None:
        try:
            await processor.finish()
        except Exception:
            logger.exception("request %s: recording spend failed", processor.request_id)

    async def drain(self, *, streams_timeout_s: float = 10.0) -> None:
        """Wait until open streams end (at most streams_timeout_s) and their spend is written."""
        deadline = asyncio.get_running_loop().time() + streams_timeout_s
        while self.active_streams and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        while self._finishing:
            await asyncio.gather(*list(self._finishing), return_exceptions=True)


SERVICE_NAME = ext_proc.DESCRIPTOR.services_by_name["ExternalProcessor"].full_name


class Service:
    """The running server with its store; `stop` drains before closing."""

    def __init__(
        self,
        server: grpc.aio.Server,
        servicer: ExternalProcessor,
        store: BudgetStore,
        port: int,
        health: health.aio.HealthServicer,
        admin: AdminRuntime | None = None,
    ) -> None:
        self.server = server
        self.servicer = servicer
        self.store = store
        self.port = port
        self.health = health
        self.admin = admin
        """The admin API and state; None without an `admin:` section."""

    async def stop(self, grace_s: float = 30.0) -> None:
        """Report NOT_SERVING, finish in-flight streams, flush spend, close."""
        for name in ("", SERVICE_NAME):
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.server.stop(grace_s)
        await self.servicer.drain()
        if self.admin is not None:
            await self.admin.stop()
        await self.store.close()
        self.servicer.gateway.metrics.close()


async def start(
    config: Config,
    *,
    store: BudgetStore | None = None,
    clock: Callable[[], datetime] | None = None,
) -> Service:
    """Open the store and start serving on config.listen."""
    store = store or await open_store(
        config.store_url,
        timeout_s=config.store_timeout_ms / 1000,
        ledger_url=config.ledger_url,
        outbox_url=config.outbox_url,
    )
    metrics = Metrics()
    if clock is None:
        gateway = Gateway(config, store, metrics=metrics)
    else:
        gateway = Gateway(config, store, clock=clock, metrics=metrics)
    admin = None
    if config.admin is not None:
        try:
            admin = await start_admin(config, gateway)
        except BaseException:
            await store.close()
            raise
    if config.metrics_listen:
        metrics.serve(config.metrics_listen)
    servicer = ExternalProcessor(gateway)
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            # A second process on the same port must fail, not silently
            # take half of Envoy's streams.
            ("grpc.so_reuseport", 0),
        ]
    )
    ext_proc_grpc.add_ExternalProcessorServicer_to_server(servicer, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
        server,
    )
    port = server.add_insecure_port(config.listen)
    if port == 0:
        if admin is not None:
            await admin.stop()
        await store.close()
        raise OSError(f"cannot listen on {config.listen}")
    await server.start()
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    loop = asyncio.get_running_loop()
    logger.info("ext_proc server listening on %s (event loop %s)", config.listen, type(loop).__module__.split(".")[0])
    return Service(server, servicer, store, port, health_servicer, admin)
