"""Budgets and the spend ledger stay exact when a server fails under load.

Each test runs `lynkr-extproc serve` processes behind a real Envoy, with
the Redis store and the PostgreSQL ledger. In the middle of a bounded load
it stops one component: Redis (killed, back empty), PostgreSQL (fast
shutdown), or the ext_proc process itself (SIGKILL, SIGTERM). A server
that a test stops is a private one on a free port. The others are the
shared Redis and PostgreSQL, with a per-test key prefix and schema.

The tests configure Envoy to return x-request-id in every response, so
each client outcome can be matched to its ledger record by request id.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import signal
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self, TypeVar

import asyncpg
import grpc
import pytest
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc

from lynkr_extproc import envoy_config
from lynkr_extproc.config import Config, parse_config
from lynkr_extproc.gateway import Gateway, Tenant
from lynkr_extproc.store import BudgetStore, SpendRecord, open_store
from tests.support import cases
from tests.support.backends import REDIS_URL, backend_settings
from tests.support.envoy import Envoy
from tests.support.ports import free_port
from tests.support.processes import ServeProcess
from tests.support.servers import PostgresTemplate, PrivatePostgres, PrivateRedis
from tests.support.upstream import FIXTURES, Received, ReplayUpstream, Reply

pytestmark = pytest.mark.e2e

T = TypeVar("T")

PER_REQUEST = 75_000
"""Nano-dollars held and then charged per chat request: 100 input and 100
output tokens of gpt-4o-mini at $0.15 and $0.60 per million."""

CHAT_PATH = "/v1/chat/completions"
CHAT = {
    "model": "gpt-4o-mini",
    "max_tokens": 100,
    "messages": [{"role": "user", "content": "x" * 400}],
}
CHAT_REPLY = Reply.json(
    {"choices": [], "usage": {"prompt_tokens": 100, "completion_tokens": 100}}
)

MESSAGES_PATH = "/v1/messages"
STREAM = {
    "model": "claude-sonnet-4",
    "max_tokens": 256,
    "stream": True,
    "messages": [{"role": "user", "content": "Hello"}],
}
STREAM_BODY = (FIXTURES / "anthropic" / "message_stream.body").read_bytes()
STREAM_COST = 300_000
"""Cost of the recorded stream: 25 input and 15 output tokens of
claude-sonnet-4 at $3 and $15 per million."""

REQUEST_TIMEOUT_S = 30.0
WORKERS = 8


# -- clients ---------------------------------------------------------------


@dataclass
class Outcome:
    """What one client saw: status 0 means no HTTP response arrived."""

    status: int
    request_id: str
    body: bytes
    error: str = ""
    """The exception that cut the request or its body short, if any."""

    def error_type(self) -> str | None:
        try:
            return json.loads(self.body)["error"]["type"]
        except (ValueError, KeyError, TypeError):
            return None


def post(port: int, path: str, body: dict[str, Any]) -> Outcome:
    """Send one request through Envoy and read the whole response."""
    connection = http.client.HTTPConnection(
        "127.0.0.1", port, timeout=REQUEST_TIMEOUT_S
    )
    try:
        headers = {
            "content-type": "application/json",
            "x-api-key": cases.secret("vk-a"),
        }
        connection.request(
            "POST", path, body=json.dumps(body).encode(), headers=headers
        )
        reply = connection.getresponse()
        request_id = reply.getheader("x-request-id", "")
        try:
            return Outcome(reply.status, request_id, reply.read())
        except (OSError, http.client.HTTPException) as exc:
            return Outcome(reply.status, request_id, b"", repr(exc))
    except (OSError, http.client.HTTPException) as exc:
        return Outcome(0, "", b"", repr(exc))
    finally:
        connection.close()


def statuses(outcomes: list[Outcome]) -> list[int]:
    return [outcome.status for outcome in outcomes]


def admitted_ids(outcomes: list[Outcome]) -> set[str]:
    return {outcome.request_id for outcome in outcomes if outcome.status == 200}


class StreamReader:
    """A streaming request read on its own thread, so the test can act mid-stream."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.status = 0
        self.request_id = ""
        self.body = bytearray()
        self.error = ""
        self.first_bytes = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)

    def start(self) -> StreamReader:
        self._thread.start()
        return self

    def _read(self) -> None:
        connection = http.client.HTTPConnection(
            "127.0.0.1", self.port, timeout=REQUEST_TIMEOUT_S
        )
        try:
            headers = {
                "content-type": "application/json",
                "x-api-key": cases.secret("vk-a"),
            }
            connection.request(
                "POST", MESSAGES_PATH, body=json.dumps(STREAM).encode(), headers=headers
            )
            reply = connection.getresponse()
            self.status = reply.status
            self.request_id = reply.getheader("x-request-id", "")
            while True:
                piece = reply.read1(65536)
                if not piece:
                    break
                self.body += piece
                self.first_bytes.set()
        except (OSError, http.client.HTTPException) as exc:
            self.error = repr(exc)
        finally:
            connection.close()
            self.first_bytes.set()

    def join(self) -> None:
        self._thread.join(REQUEST_TIMEOUT_S + 5)


class Gate:
    """An upstream reply that waits while the gate is closed."""

    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.opened = threading.Event()
        self.opened.set()

    def __call__(self, received: Received) -> Reply:
        self.opened.wait(REQUEST_TIMEOUT_S)
        return self.reply


# -- deployment ------------------------------------------------------------


def fault_document(
    settings: dict[str, str],
    *,
    openai_url: str = "http://127.0.0.1:9",
    anthropic_url: str = "http://127.0.0.1:9",
    limit_requests: int = 10_000,
) -> dict[str, Any]:
    """Return a config in which team t1 may spend `limit_requests` chat requests."""
    document = cases.document(
        settings, openai_url=openai_url, anthropic_url=anthropic_url
    )
    document["budgets"] = {
        "team": {
            "t1": [
                {"period": "month", "limit_usd": limit_requests * PER_REQUEST / 10**9}
            ]
        }
    }
    return document


class Deployment:
    """`serve` processes, each with its own outbox, behind one Envoy."""

    def __init__(
        self, document: dict[str, Any], folder: Path, *, replicas: int = 1
    ) -> None:
        self.replicas: list[ServeProcess] = []
        for index in range(replicas):
            server = dict(
                document["server"],
                listen=f"127.0.0.1:{free_port()}",
                outbox=f"sqlite:///{folder / f'outbox-{index}.db'}",
            )
            self.replicas.append(
                ServeProcess(dict(document, server=server), folder, f"extproc-{index}")
            )
        document["envoy"]["ext_proc_address"] = [
            replica.address for replica in self.replicas
        ]
        self.config = parse_config(document)
        self.port = self.config.envoy.listen_port
        self.exits: list[int] = []
        self._envoy: Envoy | None = None

    def __enter__(self) -> Self:
        try:
            for replica in self.replicas:
                replica.start()
            self._envoy = Envoy(bootstrap_with_request_ids(self.config)).__enter__()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self._envoy is not None:
            self._envoy.__exit__()
            self._envoy = None
        if not self.exits:
            self.exits = [replica.terminate() for replica in self.replicas]

    def stop_replicas(self) -> list[int]:
        """SIGTERM every replica and return the exit statuses."""
        self.exits = [replica.terminate() for replica in self.replicas]
        return self.exits

    def send(
        self, count: int, path: str = CHAT_PATH, body: dict[str, Any] = CHAT
    ) -> list[Outcome]:
        with ThreadPoolExecutor(WORKERS) as pool:
            return list(pool.map(lambda _: post(self.port, path, body), range(count)))

    def outbox_paths(self) -> list[str]:
        return [
            replica.document["server"]["outbox"][len("sqlite:///") :]
            for replica in self.replicas
        ]

    def outbox_rows(self) -> int:
        return sum(count_outbox_rows(path) for path in self.outbox_paths())


def bootstrap_with_request_ids(config: Config) -> dict[str, Any]:
    """Return the product's Envoy bootstrap, adding x-request-id to every response."""
    bootstrap = envoy_config.bootstrap(config)
    for listener in bootstrap["static_resources"]["listeners"]:
        for chain in listener["filter_chains"]:
            for network_filter in chain["filters"]:
                network_filter["typed_config"]["always_set_request_id_in_response"] = (
                    True
                )
    return bootstrap


def count_outbox_rows(path: str) -> int:
    """Return the records in an outbox file: charged or not, not yet in the ledger."""
    if not Path(path).exists():
        return 0
    with contextlib.closing(sqlite3.connect(path, timeout=10)) as db:
        return db.execute("SELECT count(*) FROM outbox").fetchone()[0]


def wait_for(condition: Callable[[], T], timeout_s: float, description: str) -> T:
    """Poll `condition` until it returns a true value; fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout_s}s waiting for {description}"
            )
        time.sleep(0.05)


def stopped_listening(address: str) -> bool:
    """Return whether a health check RPC to `address` fails as UNAVAILABLE.

    A server inside `grpc.aio.Server.stop` has closed its listening socket,
    so the new connection fails. A slow reply does not count.
    """
    with grpc.insecure_channel(address) as channel:
        try:
            health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=5
            )
        except grpc.RpcError as exc:
            return exc.code() == grpc.StatusCode.UNAVAILABLE
    return False


# -- store figures ---------------------------------------------------------


@dataclass
class StoreFigures:
    """The budget state and ledger after a run, as the test reads them."""

    committed: int
    """The team's committed nano-dollars in Redis."""
    holds: int
    """Unexpired holds of every window."""
    records: list[SpendRecord]
    """Every row of the ledger."""

    def ledger_sum(self) -> int:
        return sum(record.cost_nanos for record in self.records if record.team == "t1")

    def ids(self) -> set[str]:
        return {record.request_id for record in self.records}

    def duplicates(self) -> int:
        """Count ledger rows whose request id another row has too."""
        return len(self.records) - len(self.ids())

    def counter_drift(self) -> int:
        """Return the team counter minus the team's ledger sum, in nano-dollars."""
        return self.committed - self.ledger_sum()


def report(name: str, **figures: object) -> None:
    """Print the figures of one fault run on one line."""
    line = " ".join(f"{key}={value}" for key, value in figures.items())
    print(f"fault {name}: {line}")


@contextlib.asynccontextmanager
async def reader_store(config: Config, folder: Path) -> AsyncIterator[BudgetStore]:
    """Open the deployment's store with an outbox file of the test's own.

    Closing the store flushes its outbox, so it must not share a file with
    a `serve` process: that would deliver records the process left behind.
    """
    store = await open_store(
        config.store_url,
        timeout_s=5,
        ledger_url=config.ledger_url,
        outbox_url=f"sqlite:///{folder / 'reader-outbox.db'}",
    )
    try:
        yield store
    finally:
        await store.close()


def read_store(config: Config, folder: Path) -> StoreFigures:
    """Read the team counter, the holds and the whole ledger.

    `balance` would rebuild a missing counter from the ledger and so hide
    any drift. Every test settles requests after its last fault, so the
    counter it reads is the one the `serve` processes kept.
    """

    async def read() -> StoreFigures:
        async with reader_store(config, folder) as store:
            key = next(iter(config.keys.values()))
            charges = Gateway(config, store).charges(Tenant(key, None))
            team = next(charge for charge in charges if charge.level == "team")
            committed, _ = await store.balance(team)
            holds = await store.holds_in_flight()
            records = await store.ledger.records()  # type: ignore[attr-defined]
            return StoreFigures(committed, holds, records)

    return asyncio.run(read())


def stored_holds(config: Config) -> int:
    """Count the holds in Redis, expired or not: a script drops an expired hold later.

    Unlike `holds_in_flight`, the count does not depend on how long ago the
    hold was made, so it can be checked while hold_ttl_s is short.
    """
    url, _, query = config.store_url.partition("?")
    prefix = query.split("prefix=", 1)[1]
    client = redis.Redis.from_url(url)
    try:
        return sum(
            client.zcard(key) for key in client.scan_iter(match=f"{prefix}:*:hz:*")
        )
    finally:
        client.close()


def holds_in_flight(config: Config, folder: Path) -> int:
    async def read() -> int:
        async with reader_store(config, folder) as store:
            return await store.holds_in_flight()

    return asyncio.run(read())


@contextlib.contextmanager
def ledger_writes_blocked(ledger_url: str) -> Iterator[None]:
    """Hold an EXCLUSIVE lock on the ledger table: reads go on, inserts wait.

    The product's ledger writes time out while the lock is held, so settled
    records stay in the outbox, as in a PostgreSQL outage, without stopping
    the shared server.
    """
    url, _, query = ledger_url.partition("?")
    schema = query.split("schema=", 1)[1]

    async def lock() -> asyncpg.Connection:
        connection = await asyncpg.connect(url)
        await connection.execute("BEGIN")
        await connection.execute(
            f'LOCK TABLE "{schema}".lynkr_spend_log IN EXCLUSIVE MODE'
        )
        return connection

    loop = asyncio.new_event_loop()
    connection = loop.run_until_complete(lock())
    try:
        yield
    finally:
        loop.run_until_complete(connection.execute("ROLLBACK"))
        loop.run_until_complete(connection.close())
        loop.close()


# -- fixtures --------------------------------------------------------------


@pytest.fixture
def shared_settings(tmp_path: Path) -> Iterator[dict[str, str]]:
    """Return shared Redis and PostgreSQL settings with a per-test prefix and schema."""
    yield from backend_settings("redis+postgresql", tmp_path)


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    with PrivateRedis() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[PostgresTemplate]:
    template = PostgresTemplate()
    try:
        yield template.create()
    finally:
        template.remove()


@pytest.fixture
def private_postgres(postgres_template: PostgresTemplate) -> Iterator[PrivatePostgres]:
    with PrivatePostgres(postgres_template) as server:
        yield server


# -- Redis outage ----------------------------------------------------------


@dataclass
class RedisOutage:
    """Client outcomes of the four phases of one Redis outage."""

    before: list[Outcome]
    """Sent while Redis was up."""
    in_flight: list[Outcome]
    """Admitted, then held in the upstream while Redis was killed."""
    during: list[Outcome]
    """Sent while Redis was down."""
    after: list[Outcome]
    """Sent after Redis came back empty."""

    def all(self) -> list[Outcome]:
        return self.before + self.in_flight + self.during + self.after


def run_redis_outage(
    deployment: Deployment,
    redis_server: PrivateRedis,
    upstream: ReplayUpstream,
    gate: Gate,
) -> RedisOutage:
    """Send 200 chat requests around a Redis crash.

    First 60 requests. Then 8 that are admitted and wait in the upstream
    while Redis is killed, so their spend is settled while Redis is down.
    Then 40 while it is down. Then Redis restarts empty, and 92 follow.
    """
    before = deployment.send(60)
    gate.opened.clear()
    reached = len(upstream.received)
    with ThreadPoolExecutor(8) as pool:
        futures: list[Future[Outcome]] = [
            pool.submit(post, deployment.port, CHAT_PATH, CHAT) for _ in range(8)
        ]
        wait_for(
            lambda: len(upstream.received) == reached + 8,
            20,
            "8 admitted requests to reach the upstream",
        )
        redis_server.kill()
        gate.opened.set()
        in_flight = [future.result() for future in futures]
    during = deployment.send(40)
    redis_server.restart()
    after = deployment.send(92)
    return RedisOutage(before, in_flight, during, after)


def with_redis(settings: dict[str, str], server: PrivateRedis) -> dict[str, str]:
    """Return the settings with the store moved to a private Redis, same prefix."""
    return dict(settings, store=settings["store"].replace(REDIS_URL, server.url))


def test_redis_killed_fail_closed(shared_settings, private_redis, tmp_path: Path):
    """Redis crash, fail closed: 503 while down, budget of 100 requests kept after."""
    limit = 100
    gate = Gate(CHAT_REPLY)
    settings = with_redis(shared_settings, private_redis)
    with ReplayUpstream(gate) as upstream:
        document = fault_document(
            settings, openai_url=upstream.url, limit_requests=limit
        )
        # One process: a rebuilt counter is documented to miss records in
        # other processes' outboxes, but not records in its own.
        with Deployment(document, tmp_path) as deployment:
            run = run_redis_outage(deployment, private_redis, upstream, gate)
            wait_for(lambda: deployment.outbox_rows() == 0, 60, "the outboxes to drain")
            exits = deployment.stop_replicas()

    figures = read_store(deployment.config, tmp_path)
    outcomes = run.all()
    admitted = admitted_ids(outcomes)
    unavailable = [
        outcome
        for outcome in outcomes
        if outcome.status == 503 and outcome.error_type() == "budget_unavailable"
    ]
    overspend = max(0, figures.ledger_sum() - limit * PER_REQUEST)
    lost = admitted - figures.ids()
    unexpected = figures.ids() - admitted

    report(
        "redis-kill-closed",
        requests=len(outcomes),
        admitted=len(admitted),
        budget_unavailable=len(unavailable),
        budget_exceeded=statuses(outcomes).count(429),
        admitted_after_restart=statuses(run.after).count(200),
        overspend_nanos=overspend,
        counter_drift_nanos=figures.counter_drift(),
        leaked_holds=figures.holds,
        lost=len(lost),
        unexpected=len(unexpected),
        duplicates=figures.duplicates(),
    )

    assert exits == [0]
    assert statuses(run.before) == [200] * 60
    assert statuses(run.in_flight) == [200] * 8
    assert statuses(run.during) == [503] * 40
    assert len(unavailable) == 40
    assert set(statuses(run.after)) <= {200, 429}
    assert statuses(run.after).count(200) > 0
    assert figures.counter_drift() == 0
    assert figures.holds == 0
    assert lost == set()
    assert unexpected == set()
    assert figures.duplicates() == 0
    # NOTE: fails with the current Redis store. The counter rebuilt after the
    # restart leaves out the 8 in-flight requests, because their records wait
    # uncharged in the outbox until the reconciler charges them, at least two
    # store timeouts later. Requests sent meanwhile are admitted into the gap.
    assert overspend == 0
    assert len(admitted) == limit


def test_redis_killed_fail_open(shared_settings, private_redis, tmp_path: Path):
    """Redis crash, fail open: all 200 served, all spend charged after Redis returns."""
    gate = Gate(CHAT_REPLY)
    settings = with_redis(shared_settings, private_redis)
    with ReplayUpstream(gate) as upstream:
        document = fault_document(settings, openai_url=upstream.url)
        document["server"]["store_failure"] = "open"
        with Deployment(document, tmp_path, replicas=2) as deployment:
            run = run_redis_outage(deployment, private_redis, upstream, gate)
            outbox_after_restart = deployment.outbox_rows()
            wait_for(lambda: deployment.outbox_rows() == 0, 60, "the outboxes to drain")
            exits = deployment.stop_replicas()

    figures = read_store(deployment.config, tmp_path)
    outcomes = run.all()
    admitted = admitted_ids(outcomes)
    lost = admitted - figures.ids()
    unexpected = figures.ids() - admitted

    report(
        "redis-kill-open",
        requests=len(outcomes),
        admitted=len(admitted),
        outbox_rows_after_restart=outbox_after_restart,
        counter_drift_nanos=figures.counter_drift(),
        leaked_holds=figures.holds,
        lost=len(lost),
        unexpected=len(unexpected),
        duplicates=figures.duplicates(),
    )

    assert exits == [0, 0]
    assert statuses(outcomes) == [200] * 200
    assert len(admitted) == 200
    assert figures.counter_drift() == 0
    assert figures.committed == 200 * PER_REQUEST
    assert figures.holds == 0
    assert lost == set()
    assert unexpected == set()
    assert figures.duplicates() == 0


# -- PostgreSQL outage -----------------------------------------------------


def test_postgres_stopped_outbox_drains(
    private_postgres: PrivatePostgres, shared_settings, tmp_path: Path
):
    """PostgreSQL stopped: records wait in the outbox, then reach the ledger once."""
    settings = dict(
        shared_settings, ledger=f"{private_postgres.url}?schema=lynkr_faults"
    )
    with ReplayUpstream(CHAT_REPLY) as upstream:
        document = fault_document(settings, openai_url=upstream.url)
        with Deployment(document, tmp_path) as deployment:
            before = deployment.send(40)
            private_postgres.stop()
            during = deployment.send(80)
            outbox_while_down = deployment.outbox_rows()
            private_postgres.start()
            after = deployment.send(80)
            # NOTE: fails now and then, mostly under CPU load. After a fast
            # shutdown asyncpg can raise InternalClientError ("another
            # operation is in progress"), which PostgresLedger._call does not
            # translate, so the store's flush loop ends and the outbox stops
            # draining until the process restarts.
            wait_for(lambda: deployment.outbox_rows() == 0, 60, "the outbox to drain")
            exits = deployment.stop_replicas()

    figures = read_store(deployment.config, tmp_path)
    outcomes = before + during + after
    admitted = admitted_ids(outcomes)
    lost = admitted - figures.ids()
    unexpected = figures.ids() - admitted

    report(
        "postgres-stop",
        requests=len(outcomes),
        admitted=len(admitted),
        outbox_rows_while_down=outbox_while_down,
        records=len(figures.records),
        counter_drift_nanos=figures.counter_drift(),
        leaked_holds=figures.holds,
        lost=len(lost),
        unexpected=len(unexpected),
        duplicates=figures.duplicates(),
    )

    assert exits == [0]
    assert statuses(outcomes) == [200] * 200
    assert outbox_while_down > 0
    assert len(figures.records) == 200
    assert figures.counter_drift() == 0
    assert figures.committed == 200 * PER_REQUEST
    assert figures.holds == 0
    assert lost == set()
    assert unexpected == set()
    assert figures.duplicates() == 0


# -- ext_proc process faults -----------------------------------------------


def test_extproc_killed_mid_stream(shared_settings, tmp_path: Path):
    """SIGKILL mid-stream: the hold expires, the outbox replay charges once."""
    hanging_stream = Reply.sse([STREAM_BODY], hang_after=True)
    with (
        ReplayUpstream(CHAT_REPLY) as openai,
        ReplayUpstream(hanging_stream) as anthropic,
    ):
        document = fault_document(
            shared_settings, openai_url=openai.url, anthropic_url=anthropic.url
        )
        document["budgets"]["hold_ttl_s"] = 2
        with Deployment(document, tmp_path) as deployment:
            config = deployment.config
            first = deployment.send(20)
            wait_for(
                lambda: deployment.outbox_rows() == 0,
                20,
                "20 records to reach the ledger",
            )
            with ledger_writes_blocked(config.ledger_url):
                unflushed = deployment.send(10)
                outbox_at_kill = deployment.outbox_rows()
                stream = StreamReader(deployment.port).start()
                assert stream.first_bytes.wait(REQUEST_TIMEOUT_S)
                holds_before_kill = stored_holds(config)

                killed_status = deployment.replicas[0].kill()
                stream.join()
                wait_for(
                    lambda: holds_in_flight(config, tmp_path) == 0,
                    20,
                    "the stream's hold to expire",
                )

            restarted = ServeProcess(
                deployment.replicas[0].document, tmp_path, "extproc-restarted"
            )
            deployment.replicas[0] = restarted
            restarted.start()
            wait_for(
                lambda: deployment.outbox_rows() == 0,
                60,
                "the restarted process to replay its outbox",
            )
            last = deployment.send(10)
            exits = deployment.stop_replicas()

    figures = read_store(config, tmp_path)
    outcomes = first + unflushed + last
    admitted = admitted_ids(outcomes)
    lost = admitted - figures.ids()
    unexpected = figures.ids() - admitted

    report(
        "extproc-kill",
        chat_requests=len(outcomes),
        admitted=len(admitted),
        outbox_rows_at_kill=outbox_at_kill,
        holds_before_kill=holds_before_kill,
        stream_status=stream.status,
        stream_bytes=f"{len(stream.body)}/{len(STREAM_BODY)}",
        stream_error=stream.error or "-",
        stream_recorded=stream.request_id in figures.ids(),
        counter_drift_nanos=figures.counter_drift(),
        leaked_holds=figures.holds,
        lost=len(lost),
        unexpected=len(unexpected),
        duplicates=figures.duplicates(),
    )

    assert killed_status == -signal.SIGKILL
    assert exits == [0]
    assert statuses(outcomes) == [200] * 40
    assert outbox_at_kill == 10
    assert holds_before_kill == 1
    # Envoy had already sent the 200 and the first events, so all it can do
    # when ext_proc fails is reset the stream.
    assert stream.status == 200
    assert len(stream.body) > 0
    assert STREAM_BODY.startswith(bytes(stream.body))
    assert stream.error != ""
    # The process died before settling, so the stream's spend is not recorded
    # and only its hold, now expired, ever counted against the budget.
    assert stream.request_id not in figures.ids()
    assert figures.counter_drift() == 0
    assert figures.committed == 40 * PER_REQUEST
    assert figures.holds == 0
    assert lost == set()
    assert unexpected == set()
    assert figures.duplicates() == 0


def test_sigterm_finishes_streams(shared_settings, tmp_path: Path):
    """SIGTERM mid-load: 10 streams end whole and recorded, new requests get 503."""
    events = [event + b"\n\n" for event in STREAM_BODY.split(b"\n\n") if event]
    assert b"".join(events) == STREAM_BODY
    slow_stream = Reply.sse(events, chunk_delay_s=2.0 / len(events))
    with ReplayUpstream(CHAT_REPLY) as openai, ReplayUpstream(slow_stream) as anthropic:
        document = fault_document(
            shared_settings, openai_url=openai.url, anthropic_url=anthropic.url
        )
        with Deployment(document, tmp_path) as deployment:
            replica = deployment.replicas[0]
            assert replica.process is not None
            streams = [StreamReader(deployment.port).start() for _ in range(10)]
            wait_for(
                lambda: len(anthropic.received) == 10,
                20,
                "10 streams to reach the upstream",
            )

            replica.process.send_signal(signal.SIGTERM)
            wait_for(
                lambda: stopped_listening(replica.address),
                20,
                "the process to stop accepting streams",
            )
            after_sigterm = deployment.send(5)

            for stream in streams:
                stream.join()
            exit_status = replica.process.wait(REQUEST_TIMEOUT_S)
            deployment.stop_replicas()

    figures = read_store(deployment.config, tmp_path)
    stream_ids = {stream.request_id for stream in streams}
    complete = [
        stream
        for stream in streams
        if stream.status == 200 and bytes(stream.body) == STREAM_BODY
    ]
    lost = stream_ids - figures.ids()
    unexpected = figures.ids() - stream_ids

    report(
        "extproc-sigterm",
        streams=len(streams),
        complete=len(complete),
        exit_status=exit_status,
        statuses_after_sigterm=",".join(map(str, statuses(after_sigterm))),
        reached_upstream_after_sigterm=len(openai.received),
        counter_drift_nanos=figures.counter_drift(),
        leaked_holds=figures.holds,
        lost=len(lost),
        unexpected=len(unexpected),
        duplicates=figures.duplicates(),
    )

    assert exit_status == 0
    assert len(complete) == 10
    assert [stream.error for stream in streams] == [""] * 10
    # The process was Envoy's only ext_proc endpoint and accepts no new
    # streams, so Envoy returns its status_on_error 503 and sends nothing
    # upstream.
    assert statuses(after_sigterm) == [503] * 5
    assert openai.received == []
    assert len(stream_ids) == 10
    assert figures.counter_drift() == 0
    assert figures.committed == 10 * STREAM_COST
    assert figures.holds == 0
    assert lost == set()
    assert unexpected == set()
    assert figures.duplicates() == 0
