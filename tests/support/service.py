"""Run the real ext_proc server on its own event loop thread."""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime
from typing import Any, Callable, Coroutine, TypeVar

from lynkr_extproc import server
from lynkr_extproc.config import Config

T = TypeVar("T")


class ServiceThread:
    def __init__(self, config: Config, *, clock: Callable[[], datetime] | None = None) -> None:
        self.config = config
        self.clock = clock
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.service: server.Service | None = None

    def run(self, coroutine: Coroutine[Any, Any, T], timeout_s: float = 30.0) -> T:
        """Run a coroutine on the service's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout_s)

    @property
    def store(self) -> Any:
        assert self.service is not None
        return self.service.store

    def drain(self) -> None:
        """Wait until every ended stream has recorded its spend."""
        assert self.service is not None
        self.run(self.service.servicer.drain())

    def __enter__(self) -> "ServiceThread":
        self._thread.start()
        self.service = self.run(server.start(self.config, clock=self.clock))
        return self

    def __exit__(self, *exc: object) -> None:
        if self.service is not None:
            self.run(self.service.stop(5.0))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()
