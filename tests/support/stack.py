"""Envoy + the ext_proc server + replay upstreams, wired by one config."""

from __future__ import annotations

import copy
import hashlib
import http.client
import json
from pathlib import Path
from typing import Any

from lynkr_extproc import envoy_config
from lynkr_extproc.config import parse_config

from .envoy import Envoy
from .ports import free_port
from .service import ServiceThread


def key_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def base_config(upstreams: dict[str, tuple[str, str]], store_path: Path) -> dict[str, Any]:
    """Return a config document with one tier per (provider, url) upstream.

    Tier names are the upstream names in upper case; budgets and keys are
    left for the test to add.
    """
    return {
        "server": {
            "listen": f"127.0.0.1:{free_port()}",
            "store": f"sqlite:///{store_path}",
        },
        "envoy": {"listen": f"127.0.0.1:{free_port()}", "admin_port": free_port()},
        "upstreams": {
            name: {"provider": provider, "url": url, "api_key": f"provider-secret-{name}"}
            for name, (provider, url) in upstreams.items()
        },
        "tiers": {},
        "keys": [],
    }


class Stack:
    """A running Envoy and ext_proc server for one config document."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = copy.deepcopy(document)
        self.config = parse_config(self.document)
        self.service = ServiceThread(self.config)
        self.envoy = Envoy(envoy_config.bootstrap(self.config))
        self.port = self.config.envoy.listen_port

    def __enter__(self) -> "Stack":
        self.service.__enter__()
        try:
            self.envoy.__enter__()
        except BaseException:
            self.service.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.envoy.__exit__(*exc)
        self.service.__exit__(*exc)

    def post(
        self,
        path: str,
        body: dict[str, Any] | bytes,
        headers: dict[str, str] | None = None,
        timeout_s: float = 30,
    ) -> "Response":
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout_s)
        try:
            connection.request(
                "POST", path, body=raw,
                headers={"content-type": "application/json", **(headers or {})},
            )
            reply = connection.getresponse()
            return Response(reply.status, {k.lower(): v for k, v in reply.getheaders()}, reply.read())
        finally:
            connection.close()

    def holds(self) -> int:
        """Return the unexpired budget holds in the store."""
        return self.service.run(self.service.store.holds_in_flight())

    def records(self) -> list[dict[str, Any]]:
        """Return every spend_log row, oldest first, after pending writes."""
        import sqlite3

        self.service.drain()
        path = self.config.store_url[len("sqlite:///"):]
        with sqlite3.connect(path) as db:
            db.row_factory = sqlite3.Row
            rows = db.execute("SELECT * FROM spend_log ORDER BY time").fetchall()
        return [dict(row) for row in rows]


class Response:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"Response({self.status}, {self.headers}, {self.body[:300]!r})"
