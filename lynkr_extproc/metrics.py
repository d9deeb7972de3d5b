"""Prometheus metrics of the ext_proc service.

Names follow the OpenTelemetry generative-AI conventions where one exists
(`gen_ai.client.token.usage` with `gen_ai.token.type`, `gen_ai.request.model`
and `gen_ai.provider.name`), with dots written as underscores because
Prometheus names cannot contain dots. Everything else is `lynkr_*`.

Each Metrics object has its own registry, so several servers in one
process (tests) do not share counters.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from typing import Any, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

logger = logging.getLogger(__name__)

PHASE_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.requests = Counter(
            "lynkr_requests", "LLM API requests by decision and tier.",
            ["decision", "tier"], registry=registry,
        )
        self.rejections = Counter(
            "lynkr_budget_rejections", "Requests rejected by a budget, by level and window.",
            ["level", "window"], registry=registry,
        )
        self.spend = Counter(
            "lynkr_spend_usd", "Spend recorded, in USD, by budget level and tier.",
            ["level", "tier"], registry=registry,
        )
        self.holds = Gauge(
            "lynkr_holds_in_flight", "Budget holds of this process not yet settled.", registry=registry,
        )
        self.phase_seconds = Histogram(
            "lynkr_phase_seconds", "Time to answer one ext_proc message, by phase.",
            ["phase"], buckets=PHASE_BUCKETS, registry=registry,
        )
        self._phases: dict[str, Any] = {}
        self.store_seconds = Histogram(
            "lynkr_store_seconds", "Budget store call latency, by operation.",
            ["operation"], buckets=PHASE_BUCKETS, registry=registry,
        )
        self.store_errors = Counter(
            "lynkr_store_errors", "Budget store calls that failed, by operation.",
            ["operation"], registry=registry,
        )
        self.fail_open = Counter(
            "lynkr_fail_open_admissions", "Requests admitted without a hold because the store failed.",
            registry=registry,
        )
        self.usage_source = Counter(
            "lynkr_usage_records", "Spend records by usage source (reported, estimated) and outcome.",
            ["usage_source", "outcome"], registry=registry,
        )
        self.token_usage = Histogram(
            "gen_ai_client_token_usage", "Tokens per request (OpenTelemetry gen_ai.client.token.usage).",
            ["gen_ai_token_type", "gen_ai_request_model", "gen_ai_provider_name"],
            buckets=TOKEN_BUCKETS, registry=registry,
        )

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.observe_phase(name, time.perf_counter() - started)

    def observe_phase(self, name: str, seconds: float) -> None:
        """Record one message's processing time; the labelled child is looked up once."""
        child = self._phases.get(name)
        if child is None:
            child = self._phases[name] = self.phase_seconds.labels(name)
        child.observe(seconds)

    @contextmanager
    def store_call(self, operation: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        except Exception:
            self.store_errors.labels(operation).inc()
            raise
        finally:
            self.store_seconds.labels(operation).observe(time.perf_counter() - started)

    def serve(self, address: str) -> None:
        """Serve /metrics over HTTP on host:port, until `close`."""
        host, _, port = address.rpartition(":")
        self._http, _ = start_http_server(int(port), addr=host or "127.0.0.1", registry=self.registry)
        logger.info("metrics served on http://%s/metrics", address)

    def close(self) -> None:
        http = getattr(self, "_http", None)
        if http is not None:
            http.shutdown()
            http.server_close()
            self._http = None
