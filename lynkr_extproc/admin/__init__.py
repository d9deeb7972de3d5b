"""The admin API: virtual keys, budgets and spend reports, changed without a restart.

    store.py       AdminStore: the admin tables in the budget store's database
    sqlite.py      ... in a SQLite file (the store's, or the Redis store's ledger)
    postgres.py    ... in the PostgreSQL ledger
    state.py       AdminState: the copy each replica applies, polled; the gateway's hook
    operations.py  AdminOperations: validation and effect of each call
    service.py     the gRPC server, with its bearer-token check
    cli.py         `lynkr-extproc keys | budgets | spend report`
    v1/            code generated from proto/lynkr/admin/v1/admin.proto

All of it is off unless lynkr.yaml has an `admin:` section.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc

from .operations import AdminOperations
from .service import serve
from .state import AdminState
from .store import admin_store_for

if TYPE_CHECKING:
    from ..config import Config
    from ..gateway import Gateway

STOP_GRACE_S = 1.0
"""Time in-flight admin calls get at shutdown; they are short."""


class AdminRuntime:
    """The admin state of one process, and its API server when admin.listen is set."""

    def __init__(
        self, state: AdminState, server: grpc.aio.Server | None, port: int | None
    ) -> None:
        self.state = state
        self.server = server
        self.port = port

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(STOP_GRACE_S)
        await self.state.stop()
        await self.state.store.close()


async def start_admin(config: "Config", gateway: "Gateway") -> AdminRuntime:
    """Load the admin state into the gateway and start the API if admin.listen is set."""
    settings = config.admin
    assert settings is not None
    store = admin_store_for(config)
    await store.open()
    state = AdminState(
        store, lambda: gateway.config, poll_interval_s=settings.poll_interval_s
    )
    try:
        await state.start()
        gateway.admin = state
        server, port = None, None
        if settings.listen is not None:
            server, port = await serve(settings, AdminOperations(state, gateway))
    except BaseException:
        gateway.admin = None
        await state.stop()
        await store.close()
        raise
    return AdminRuntime(state, server, port)
