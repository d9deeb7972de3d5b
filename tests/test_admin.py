"""The admin API over gRPC, against the real server on every storage backend.

Each test starts the service with an `admin:` section, changes keys or
budgets through the admin port and checks the effect on ext_proc requests
sent to the same running service, without a restart.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from lynkr_extproc.admin.model import exact_usd
from lynkr_extproc.admin.v1 import admin_pb2 as pb
from lynkr_extproc.admin.v1 import admin_pb2_grpc as pb_grpc
from lynkr_extproc.config import parse_config
from lynkr_extproc.errors import ConfigError
from lynkr_extproc.gateway import Tenant
from tests.support import cases
from tests.support.backends import BACKENDS, backend_settings
from tests.support.grpc_client import (
    ExtProcStream,
    request_body,
    request_headers,
    response_body,
    response_headers,
)
from tests.support.harness import NOW, Harness
from tests.support.ports import free_port
from tests.support.processes import ServeProcess

TOKEN_ENV = "LYNKR_TEST_ADMIN_TOKEN"
TOKEN = "admin-test-token-7c1e0f5a92"

MINI_COST = 156_000
"""Nano-dollars of 1000 input and 10 output tokens of gpt-4o-mini ($0.15, $0.60 per M)."""
GPT4O_COST = 2_600_000
"""Nano-dollars of 1000 input and 10 output tokens of gpt-4o ($2.50, $10 per M)."""


@pytest.fixture(autouse=True)
def admin_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path):
    yield from backend_settings(request.param, tmp_path)


def admin_document(settings: dict[str, str] | Path, **admin: Any) -> dict[str, Any]:
    """The case config with the admin API on a free port of its own."""
    document = cases.document(settings)
    document["admin"] = {
        "listen": f"127.0.0.1:{free_port()}",
        "token_env": TOKEN_ENV,
        **admin,
    }
    return document


class AdminClient:
    """Calls the admin API with a bearer token (the test token by default)."""

    def __init__(self, address: str, token: str | None = TOKEN) -> None:
        self.channel = grpc.insecure_channel(address)
        self.stub = pb_grpc.AdminStub(self.channel)
        self.metadata = () if token is None else (("authorization", f"Bearer {token}"),)

    def __getattr__(self, method: str) -> Any:
        call = getattr(self.stub, method)
        return lambda request: call(request, metadata=self.metadata, timeout=10)

    def close(self) -> None:
        self.channel.close()


def admin_client(document: dict[str, Any]) -> AdminClient:
    return AdminClient(document["admin"]["listen"])


def send(
    channel: grpc.Channel,
    secret: str,
    *,
    model: str = "gpt-4o-mini",
    request_id: str | None = None,
) -> int:
    """Send one chat request with 1000 input and 10 output tokens; return its HTTP status.

    200 means admitted and recorded; otherwise the status of the immediate
    response the service sent instead.
    """
    stream = ExtProcStream(channel)
    headers = {"x-api-key": secret}
    if request_id is not None:
        headers["x-request-id"] = request_id
    body = {
        "model": model,
        "max_tokens": 10,
        "messages": [{"role": "user", "content": "hi"}],
    }
    for message in (
        request_headers("/v1/chat/completions", headers),
        request_body(body),
    ):
        reply = stream.send(message)
        if reply.HasField("immediate_response"):
            stream.close()
            return reply.immediate_response.status.code
    usage = {"usage": {"prompt_tokens": 1000, "completion_tokens": 10}}
    stream.send(response_headers())
    stream.send(response_body(json.dumps(usage).encode(), end_of_stream=True))
    stream.close()
    return 200


def until(predicate: Any, timeout_s: float) -> float | None:
    """Poll `predicate` every 50 ms; return the seconds it took to hold, or None."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.05)
    return None


def stamp(moment: Any) -> Timestamp:
    result = Timestamp()
    result.FromDatetime(moment)
    return result


def report_request(**fields: Any) -> pb.SpendReportRequest:
    """A report over the harness's fixed clock hour, which holds every test record."""
    return pb.SpendReportRequest(
        start=stamp(NOW - timedelta(hours=1)),
        end=stamp(NOW + timedelta(hours=1)),
        **fields,
    )


# -- keys ------------------------------------------------------------------------


def test_created_key_authenticates_at_once(backend, caplog: pytest.LogCaptureFixture):
    """A key made with CreateKey admits its first request; its secret is in no log line."""
    caplog.set_level(logging.DEBUG)
    document = admin_document(backend)
    with Harness(document) as harness:
        admin = admin_client(document)
        reply = admin.CreateKey(
            pb.CreateKeyRequest(id="vk-new", team="t2", org="o1", customers=["c-1"])
        )
        status = send(harness.channel, reply.secret, request_id="req-new-key")
        records = harness.records(1)
        admin.close()
    assert reply.secret.startswith("sk-lynkr-")
    assert reply.key.id == "vk-new"
    assert reply.key.source == pb.KEY_SOURCE_ADMIN
    assert reply.key.state == pb.KEY_STATE_ACTIVE
    assert list(reply.key.customers) == ["c-1"]
    assert status == 200
    assert [(r["key_id"], r["team"], r["org"]) for r in records] == [
        ("vk-new", "t2", "o1")
    ]
    assert not [
        r.getMessage() for r in caplog.records if reply.secret in r.getMessage()
    ]


def test_created_key_id_is_generated_and_unique(tmp_path: Path):
    """An empty id is generated; an id used in lynkr.yaml or before gets ALREADY_EXISTS."""
    document = admin_document(tmp_path / "store.db")
    with Harness(document):
        admin = admin_client(document)
        generated = admin.CreateKey(pb.CreateKeyRequest(team="t1", org="o1")).key.id
        errors = {}
        for taken in ("vk-a", generated):
            with pytest.raises(grpc.RpcError) as error:
                admin.CreateKey(pb.CreateKeyRequest(id=taken, team="t1", org="o1"))
            errors[taken] = error.value.code()
        admin.close()
    assert generated.startswith("vk-")
    assert len(generated) == len("vk-") + 16
    assert errors == {
        "vk-a": grpc.StatusCode.ALREADY_EXISTS,
        generated: grpc.StatusCode.ALREADY_EXISTS,
    }


def test_list_keys_never_shows_secrets_or_hashes(backend):
    """ListKeys carries neither a secret nor a SHA-256, of admin or lynkr.yaml keys."""
    document = admin_document(backend)
    with Harness(document):
        admin = admin_client(document)
        created = admin.CreateKey(
            pb.CreateKeyRequest(id="vk-listed", team="t1", org="o1")
        )
        listing = admin.ListKeys(pb.ListKeysRequest(include_revoked=True))
        admin.close()
    raw = listing.SerializeToString()
    text = str(listing)
    config_digest = hashlib.sha256(cases.secret("vk-a").encode()).hexdigest()
    created_digest = hashlib.sha256(created.secret.encode()).hexdigest()
    assert {(k.id, k.source) for k in listing.keys} == {
        ("vk-a", pb.KEY_SOURCE_CONFIG),
        ("vk-listed", pb.KEY_SOURCE_ADMIN),
    }
    for value in (created.secret, cases.secret("vk-a"), config_digest, created_digest):
        assert value.encode() not in raw
        assert value not in text


def test_revoked_keys_get_401_at_once(backend):
    """RevokeKey works on admin keys and on keys from lynkr.yaml, effective immediately."""
    document = admin_document(backend)
    with Harness(document) as harness:
        admin = admin_client(document)
        created = admin.CreateKey(
            pb.CreateKeyRequest(id="vk-doomed", team="t1", org="o1")
        )
        before = (
            send(harness.channel, created.secret),
            send(harness.channel, cases.secret("vk-a")),
        )
        revoked_admin = admin.RevokeKey(pb.RevokeKeyRequest(id="vk-doomed"))
        revoked_config = admin.RevokeKey(pb.RevokeKeyRequest(id="vk-a"))
        after = (
            send(harness.channel, created.secret),
            send(harness.channel, cases.secret("vk-a")),
        )
        with pytest.raises(grpc.RpcError) as again:
            admin.RevokeKey(pb.RevokeKeyRequest(id="vk-a"))
        active = admin.ListKeys(pb.ListKeysRequest())
        everything = admin.ListKeys(pb.ListKeysRequest(include_revoked=True))
        admin.close()
    assert before == (200, 200)
    assert after == (401, 401)
    assert revoked_admin.state == pb.KEY_STATE_REVOKED
    assert revoked_admin.HasField("revoked_at")
    assert revoked_config.source == pb.KEY_SOURCE_CONFIG
    assert again.value.code() == grpc.StatusCode.NOT_FOUND
    assert list(active.keys) == []
    assert {(k.id, k.state) for k in everything.keys} == {
        ("vk-a", pb.KEY_STATE_REVOKED),
        ("vk-doomed", pb.KEY_STATE_REVOKED),
    }


def test_rotated_key_old_secret_401_new_works(backend):
    """RotateKey keeps the key id; the old secret gets 401, the new one is charged to the same id."""
    document = admin_document(backend)
    with Harness(document) as harness:
        admin = admin_client(document)
        created = admin.CreateKey(
            pb.CreateKeyRequest(id="vk-rot", team="t1", org="o1", tiers=["SIMPLE"])
        )
        rotated = admin.RotateKey(pb.RotateKeyRequest(id="vk-rot"))
        rotated_config = admin.RotateKey(pb.RotateKeyRequest(id="vk-a"))
        statuses = {
            "old admin": send(harness.channel, created.secret),
            "new admin": send(
                harness.channel, rotated.secret, request_id="req-rotated"
            ),
            "old config": send(harness.channel, cases.secret("vk-a")),
            "new config": send(harness.channel, rotated_config.secret),
        }
        records = harness.records(2)
        listing = admin.ListKeys(pb.ListKeysRequest())
        admin.close()
    assert statuses == {
        "old admin": 401,
        "new admin": 200,
        "old config": 401,
        "new config": 200,
    }
    assert rotated.secret != created.secret
    assert rotated.key.id == "vk-rot"
    assert list(rotated.key.tiers) == ["SIMPLE"]
    assert rotated_config.key.id == "vk-a"
    assert rotated_config.key.source == pb.KEY_SOURCE_ADMIN
    assert sorted(r["key_id"] for r in records) == ["vk-a", "vk-rot"]
    assert sorted((k.id, k.source) for k in listing.keys) == [
        ("vk-a", pb.KEY_SOURCE_ADMIN),
        ("vk-rot", pb.KEY_SOURCE_ADMIN),
    ]


def test_create_key_rejects_invalid_fields(tmp_path: Path):
    """Unknown tiers, bad ids and missing tenants get INVALID_ARGUMENT with the reason."""
    document = admin_document(tmp_path / "store.db")
    cases_ = {
        "unknown tier": pb.CreateKeyRequest(team="t1", org="o1", tiers=["HUGE"]),
        "bad id": pb.CreateKeyRequest(id="has space", team="t1", org="o1"),
        "no team": pb.CreateKeyRequest(org="o1"),
        "no org": pb.CreateKeyRequest(team="t1"),
    }
    with Harness(document):
        admin = admin_client(document)
        errors = {}
        for name, request in cases_.items():
            with pytest.raises(grpc.RpcError) as error:
                admin.CreateKey(request)
            errors[name] = (error.value.code(), error.value.details())
        admin.close()
    assert all(code == grpc.StatusCode.INVALID_ARGUMENT for code, _ in errors.values())
    assert (
        "'HUGE' is not a tier; tiers: SIMPLE, MEDIUM, COMPLEX, REASONING"
        in errors["unknown tier"][1]
    )
    assert "team is empty" in errors["no team"][1]


# -- budgets -----------------------------------------------------------------------


def test_team_budget_zero_then_delete_restores_config(backend):
    """A team budget of 0 rejects the next request with 429; deleting it restores lynkr.yaml's."""
    document = admin_document(backend)
    document["budgets"] = {"team": {"t1": [{"period": "month", "limit_usd": 10}]}}
    day = dict(level=pb.LEVEL_TEAM, id="t1", period=pb.PERIOD_DAY)
    with Harness(document) as harness:
        admin = admin_client(document)
        first = send(harness.channel, cases.secret("vk-a"))
        budget = admin.SetBudget(pb.SetBudgetRequest(**day, limit_usd="0"))
        suspended = send(harness.channel, cases.secret("vk-a"))
        windows = admin.ListBudgets(pb.ListBudgetsRequest(level=pb.LEVEL_TEAM, id="t1"))
        deleted = admin.DeleteBudget(pb.DeleteBudgetRequest(**day))
        restored = send(harness.channel, cases.secret("vk-a"))
        with pytest.raises(grpc.RpcError) as missing:
            admin.DeleteBudget(pb.DeleteBudgetRequest(**day))
        admin.close()
    assert (first, suspended, restored) == (200, 429, 200)
    assert budget.limit_usd == "0.00"
    assert budget.source == pb.BUDGET_SOURCE_ADMIN
    assert budget.name == "daily"
    assert [(b.period, b.limit_usd, b.source) for b in windows.budgets] == [
        (pb.PERIOD_MONTH, "10.00", pb.BUDGET_SOURCE_CONFIG),
        (pb.PERIOD_DAY, "0.00", pb.BUDGET_SOURCE_ADMIN),
    ]
    assert not deleted.HasField("in_effect")
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


def test_admin_window_replaces_config_window_of_its_period(tmp_path: Path):
    """An admin month window replaces lynkr.yaml's month window; other periods stay."""
    document = admin_document(tmp_path / "store.db")
    document["budgets"] = {
        "org": {
            "o1": [
                {"period": "month", "limit_usd": 10},
                {"period": "total", "limit_usd": 100},
            ]
        },
        "defaults": {"team": [{"period": "week", "limit_usd": 3}]},
    }
    with Harness(document) as harness:
        admin = admin_client(document)
        admin.SetBudget(
            pb.SetBudgetRequest(
                level=pb.LEVEL_ORG, id="o1", period=pb.PERIOD_MONTH, limit_usd="2.5"
            )
        )
        admin.SetBudget(
            pb.SetBudgetRequest(
                level=pb.LEVEL_TEAM, id="t1", period=pb.PERIOD_DAY, limit_usd="1"
            )
        )
        gateway = harness.service.service.servicer.gateway
        key = next(iter(gateway.config.keys.values()))
        charges = {
            (c.level, c.period.split(":")[0], c.limit_nanos)
            for c in gateway.charges(Tenant(key, None))
        }
        month = admin.GetBudget(
            pb.GetBudgetRequest(level=pb.LEVEL_ORG, id="o1", period=pb.PERIOD_MONTH)
        )
        week = admin.GetBudget(
            pb.GetBudgetRequest(level=pb.LEVEL_TEAM, id="t1", period=pb.PERIOD_WEEK)
        )
        admin.close()
    assert charges == {
        ("team", "week", 3 * 10**9),
        ("team", "day", 10**9),
        ("org", "total", 100 * 10**9),
        ("org", "month", 2_500_000_000),
    }
    assert (month.limit_usd, month.source) == ("2.50", pb.BUDGET_SOURCE_ADMIN)
    assert (week.limit_usd, week.source) == ("3.00", pb.BUDGET_SOURCE_CONFIG_DEFAULT)


def test_set_budget_rejects_inexact_limits(tmp_path: Path):
    """Limits are decimal strings exact to the nano-dollar, from 0 to 9,000,000."""
    document = admin_document(tmp_path / "store.db")
    window = dict(level=pb.LEVEL_TEAM, id="t1", period=pb.PERIOD_DAY)
    accepted = {"12.5": "12.50", "0.000000001": "0.000000001", "9000000": "9000000.00"}
    rejected = ["-1", "1e3", "0.0000000001", "9000000.01", "ten", "", "NaN"]
    with Harness(document):
        admin = admin_client(document)
        results = {
            text: admin.SetBudget(
                pb.SetBudgetRequest(**window, limit_usd=text)
            ).limit_usd
            for text in accepted
        }
        codes = {}
        for text in rejected:
            with pytest.raises(grpc.RpcError) as error:
                admin.SetBudget(pb.SetBudgetRequest(**window, limit_usd=text))
            codes[text] = error.value.code()
        with pytest.raises(grpc.RpcError) as unset:
            admin.SetBudget(
                pb.SetBudgetRequest(level=pb.LEVEL_TEAM, id="t1", limit_usd="1")
            )
        admin.close()
    assert results == accepted
    assert set(codes.values()) == {grpc.StatusCode.INVALID_ARGUMENT}
    assert unset.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "period is unset" in unset.value.details()


# -- spend -------------------------------------------------------------------------


def test_spend_report_totals_are_exact_sums(backend):
    """Report totals equal the recorded costs to the nano-dollar, grouped by tier and model."""
    document = admin_document(backend)
    secret = cases.secret("vk-a")
    by_tier_and_model = [pb.DIMENSION_TIER, pb.DIMENSION_MODEL]
    simple_team_t1 = [
        pb.SpendFilter(dimension=pb.DIMENSION_TEAM, value="t1"),
        pb.SpendFilter(dimension=pb.DIMENSION_TIER, value="SIMPLE"),
    ]
    nobody = [pb.SpendFilter(dimension=pb.DIMENSION_TEAM, value="nobody")]
    with Harness(document) as harness:
        admin = admin_client(document)
        statuses = [
            send(harness.channel, secret, request_id=f"mini-{i}") for i in range(3)
        ]
        statuses += [
            send(harness.channel, secret, model="gpt-4o", request_id=f"4o-{i}")
            for i in range(2)
        ]
        records = harness.records(5)

        grouped = admin.SpendReport(
            report_request(group_by=by_tier_and_model, reference_model="gpt-4o")
        )
        filtered = admin.SpendReport(report_request(filters=simple_team_t1))
        empty = admin.SpendReport(report_request(filters=nobody))
        record = admin.GetSpendRecord(pb.GetSpendRecordRequest(request_id="4o-1"))
        admin.close()

    recorded = sum(row["cost_nanos"] for row in records)
    assert statuses == [200] * 5
    assert recorded == 3 * MINI_COST + 2 * GPT4O_COST
    assert grouped.total.cost_usd == exact_usd(recorded)
    assert grouped.total.cost_usd == "0.005668"
    assert grouped.total.requests == 5
    assert grouped.total.tokens.input == 5000
    assert grouped.total.tokens.output == 50
    rows = [(list(r.group), r.requests, r.cost_usd) for r in grouped.rows]
    assert rows == [
        (["MEDIUM", "gpt-4o"], 2, "0.0052"),
        (["SIMPLE", "gpt-4o-mini"], 3, "0.000468"),
    ]
    assert [r.reference_cost_usd for r in grouped.rows] == ["0.0052", "0.0078"]
    assert grouped.total.reference_cost_usd == "0.013"
    assert grouped.reference_model == "gpt-4o"

    assert [(r.requests, r.cost_usd) for r in filtered.rows] == [(3, "0.000468")]
    assert list(empty.rows) == []
    assert empty.total.requests == 0
    assert empty.total.cost_usd == "0.00"

    assert record.key_id == "vk-a"
    assert (record.tier, record.model) == ("MEDIUM", "gpt-4o")
    assert record.cost_usd == "0.0026"
    assert (record.tokens.input, record.tokens.output) == (1000, 10)
    assert record.status == 200


def test_spend_report_rejects_invalid_queries(tmp_path: Path):
    """Unpriced reference models, reversed ranges and unset dimensions get INVALID_ARGUMENT."""
    document = admin_document(tmp_path / "store.db")
    requests = {
        "unpriced": report_request(reference_model="no-such-model"),
        "reversed": pb.SpendReportRequest(
            start=stamp(NOW), end=stamp(NOW - timedelta(days=1))
        ),
        "unset group": report_request(group_by=[pb.DIMENSION_UNSPECIFIED]),
        "empty filter": report_request(
            filters=[pb.SpendFilter(dimension=pb.DIMENSION_TEAM)]
        ),
    }
    with Harness(document):
        admin = admin_client(document)
        codes = {}
        for name, request in requests.items():
            with pytest.raises(grpc.RpcError) as error:
                admin.SpendReport(request)
            codes[name] = error.value.code()
        with pytest.raises(grpc.RpcError) as missing:
            admin.GetSpendRecord(pb.GetSpendRecordRequest(request_id="never-sent"))
        admin.close()
    assert codes == dict.fromkeys(requests, grpc.StatusCode.INVALID_ARGUMENT)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


# -- authentication and configuration ------------------------------------------------


def test_missing_or_wrong_token_is_unauthenticated(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    """Every admin call, reflection included, needs the exact bearer token."""
    caplog.set_level(logging.DEBUG)
    document = admin_document(tmp_path / "store.db")
    address = document["admin"]["listen"]
    with Harness(document) as harness:
        codes = {}
        for name, token in (
            ("missing", None),
            ("wrong", "not-the-token"),
            ("prefix", TOKEN[:-1]),
        ):
            client = AdminClient(address, token)
            with pytest.raises(grpc.RpcError) as error:
                client.ListKeys(pb.ListKeysRequest())
            codes[name] = error.value.code()
            client.close()
        basic = AdminClient(address, None)
        basic.metadata = (("authorization", f"Basic {TOKEN}"),)
        with pytest.raises(grpc.RpcError) as wrong_scheme:
            basic.ListKeys(pb.ListKeysRequest())
        with pytest.raises(grpc.RpcError) as reflection:
            stub = reflection_pb2_grpc.ServerReflectionStub(basic.channel)
            next(
                iter(
                    stub.ServerReflectionInfo(
                        iter([reflection_pb2.ServerReflectionRequest(list_services="")])
                    )
                )
            )
        basic.close()
        with pytest.raises(grpc.RpcError) as on_ext_proc_port:
            pb_grpc.AdminStub(harness.channel).ListKeys(
                pb.ListKeysRequest(),
                metadata=(("authorization", f"Bearer {TOKEN}"),),
                timeout=5,
            )
        good = AdminClient(address).ListKeys(pb.ListKeysRequest())
    assert codes == dict.fromkeys(
        ("missing", "wrong", "prefix"), grpc.StatusCode.UNAUTHENTICATED
    )
    assert wrong_scheme.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert reflection.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert on_ext_proc_port.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert [k.id for k in good.keys] == ["vk-a"]
    assert not [r.getMessage() for r in caplog.records if TOKEN[:12] in r.getMessage()]


def test_admin_config_errors(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """The admin port must differ from the ext_proc port, and the token must be set and long."""
    document = admin_document(tmp_path / "store.db")
    same_port = dict(
        document, admin={**document["admin"], "listen": document["server"]["listen"]}
    )
    with pytest.raises(
        ConfigError, match="is also server.listen; give the admin API its own port"
    ):
        parse_config(same_port)
    no_variable = dict(document, admin={"listen": document["admin"]["listen"]})
    with pytest.raises(ConfigError, match="admin.token_env: missing"):
        parse_config(no_variable)
    monkeypatch.setenv(TOKEN_ENV, "short")
    with pytest.raises(
        ConfigError, match="is 5 characters long; use a random secret of at least 16"
    ):
        parse_config(document)
    monkeypatch.delenv(TOKEN_ENV)
    with pytest.raises(
        ConfigError, match=f"environment variable {TOKEN_ENV} is not set"
    ):
        parse_config(document)
    unpriced = dict(document, admin={"reference_model": "no-such-model"})
    with pytest.raises(
        ConfigError, match="admin.reference_model: 'no-such-model' has no price"
    ):
        parse_config(unpriced)
    assert parse_config(dict(document, admin={})).admin.listen is None
    assert parse_config(cases.document(tmp_path / "store.db")).admin is None


def test_no_admin_section_serves_no_admin_state(tmp_path: Path):
    """Without `admin:` the gateway has no admin hook and lynkr.yaml alone applies."""
    with Harness(cases.document(tmp_path / "store.db")) as harness:
        service = harness.service.service
        status = send(harness.channel, cases.secret("vk-a"))
    assert service.admin is None
    assert service.servicer.gateway.admin is None
    assert status == 200


# -- replicas ------------------------------------------------------------------------


def test_two_processes_see_each_others_changes(backend, tmp_path: Path):
    """A change through one replica's admin API applies on the other within the 2 s poll."""
    document = admin_document(backend)
    poll_s = 2.0
    margin_s = 1.5
    other = dict(
        document,
        server=dict(document["server"], listen=f"127.0.0.1:{free_port()}"),
        admin=dict(document["admin"], listen=f"127.0.0.1:{free_port()}"),
    )
    first = ServeProcess(document, tmp_path, "first")
    second = ServeProcess(other, tmp_path, "second")
    try:
        first.start()
        second.start()
        admin_first = admin_client(document)
        admin_second = admin_client(other)
        to_first = grpc.insecure_channel(first.address)
        to_second = grpc.insecure_channel(second.address)

        created = admin_first.CreateKey(
            pb.CreateKeyRequest(id="vk-shared", team="t1", org="o1")
        )
        local = send(to_first, created.secret)
        seen_after = until(
            lambda: send(to_second, created.secret) == 200, poll_s + margin_s
        )

        admin_second.SetBudget(
            pb.SetBudgetRequest(
                level=pb.LEVEL_ORG, id="o1", period=pb.PERIOD_TOTAL, limit_usd="0"
            )
        )
        suspended_after = until(
            lambda: send(to_first, created.secret) == 429, poll_s + margin_s
        )

        admin_first.DeleteBudget(
            pb.DeleteBudgetRequest(level=pb.LEVEL_ORG, id="o1", period=pb.PERIOD_TOTAL)
        )
        admin_first.RevokeKey(pb.RevokeKeyRequest(id="vk-shared"))
        revoked_after = until(
            lambda: send(to_second, created.secret) == 401, poll_s + margin_s
        )
        listed = admin_second.ListKeys(pb.ListKeysRequest(include_revoked=True))
        for closable in (admin_first, admin_second, to_first, to_second):
            closable.close()
    finally:
        exits = (first.terminate(), second.terminate())
    logs = first.log() + second.log()
    print(
        f"admin propagation: key {seen_after}s, budget {suspended_after}s, revocation {revoked_after}s"
    )
    assert exits == (0, 0)
    assert local == 200
    assert seen_after is not None
    assert suspended_after is not None
    assert revoked_after is not None
    assert [(k.id, k.state) for k in listed.keys if k.id == "vk-shared"] == [
        ("vk-shared", pb.KEY_STATE_REVOKED)
    ]
    assert created.secret not in logs
    assert TOKEN not in logs
