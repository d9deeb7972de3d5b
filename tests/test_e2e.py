"""End to end: a real Envoy, the real ext_proc server, replay upstreams.

Upstreams replay recorded provider responses byte for byte (see
tests/fixtures/recorded/README.md for their sources).
"""

from __future__ import annotations

import gzip
import http.client
import json
import socket
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support import cases
from tests.support.stack import Stack
from tests.support.upstream import FIXTURES, ReplayUpstream, Reply

pytestmark = pytest.mark.e2e

MONTH = [{"period": "month", "limit_usd": 100}]


def fixture_usage(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())["usage"]


def nanos(usage: dict, price: dict) -> int:
    """Exact cost in nano-dollars of normalized usage at USD-per-million prices."""
    total = (
        usage["input_tokens"] * price["input"]
        + usage.get("cache_read_tokens", 0) * price.get("cache_read", price["input"])
        + usage.get("cache_write_tokens", 0) * price.get("cache_write", price["input"])
        + usage["output_tokens"] * price["output"]
    )
    return round(total * 1000)


@pytest.fixture
def upstreams():
    openai = ReplayUpstream(Reply.fixture("openai/chat_completion"))
    anthropic = ReplayUpstream(Reply.fixture("anthropic/message_stream"))
    with openai, anthropic:
        yield openai, anthropic


@pytest.fixture
def document(tmp_path: Path, upstreams) -> dict:
    openai, anthropic = upstreams
    document = cases.document(tmp_path / "store.db", openai_url=openai.url, anthropic_url=anthropic.url)
    document["budgets"] = {"team": {"t1": MONTH}}
    return document


def auth(key_id: str = "vk-a", **headers: str) -> dict[str, str]:
    return {"x-api-key": cases.secret(key_id), **headers}


def chat(model: str = "gpt-4o-mini", **extra: object) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}


def messages(model: str = "claude-sonnet-4", **extra: object) -> dict:
    return {"model": model, "max_tokens": 1024, "messages": [{"role": "user", "content": "Hello"}], **extra}


def test_routes_per_tier_and_records_spend(document, upstreams):
    """Two tiers on two upstreams: each request lands on its tier's upstream and is priced."""
    openai, anthropic = upstreams
    with Stack(document) as stack:
        first = stack.post("/v1/chat/completions", chat(), auth())
        second = stack.post("/v1/messages?beta=true", messages(stream=True), auth())
        records = stack.records()
    assert first.status == 200
    assert first.headers["x-lynkr-tier"] == "SIMPLE"
    assert first.headers["x-lynkr-model"] == "gpt-4o-mini"
    assert first.headers["x-lynkr-routing-reason"] == "alias:gpt-4o-mini"
    assert second.status == 200
    assert second.headers["x-lynkr-tier"] == "COMPLEX"
    assert second.body == (FIXTURES / "anthropic/message_stream.body").read_bytes()
    assert [r.path for r in openai.received] == ["/v1/chat/completions"]
    assert [r.path for r in anthropic.received] == ["/v1/messages?beta=true"]
    assert anthropic.received[0].json()["model"] == "claude-sonnet-4"
    assert anthropic.received[0].headers["x-api-key"] == "provider-secret-anthropic"
    assert anthropic.received[0].headers["anthropic-version"] == "2023-06-01"
    by_tier = {record["tier"]: record for record in records}
    assert by_tier["SIMPLE"]["cost_nanos"] == nanos(fixture_usage("openai/chat_completion"), cases.PRICES["gpt-4o-mini"])
    assert by_tier["COMPLEX"]["cost_nanos"] == nanos(fixture_usage("anthropic/message_stream"), cases.PRICES["claude-sonnet-4"])
    assert by_tier["COMPLEX"]["usage_source"] == "reported"


def test_remaining_budget_header(document):
    """Admitted responses carry the room left in the tightest window."""
    document["budgets"] = {"team": {"t1": [{"period": "day", "limit_usd": 1}, {"period": "month", "limit_usd": 100}]}}
    with Stack(document) as stack:
        response = stack.post("/v1/chat/completions", chat(max_tokens=100), auth())
    remaining = float(response.headers["x-lynkr-budget-remaining-usd"])
    assert 0.99 < remaining < 1.0


def test_budget_exhausted_gets_429_through_envoy(document, upstreams):
    """Once the team's budget is spent, Envoy returns the service's 429 and nothing goes upstream."""
    openai, _ = upstreams
    price = cases.PRICES["gpt-4o-mini"]
    one_request = nanos(fixture_usage("openai/chat_completion"), price)
    document["budgets"] = {"team": {"t1": [{"period": "month", "limit_usd": one_request / 10**9}]}}
    document["tiers"]["SIMPLE"]["max_output_estimate"] = 1
    with Stack(document) as stack:
        first = stack.post("/v1/chat/completions", chat(), auth())
        second = stack.post("/v1/chat/completions", chat(), auth())
    assert first.status == 200
    assert second.status == 429
    assert second.headers["content-type"] == "application/json"
    assert int(second.headers["retry-after"]) > 0
    error = second.json()["error"]
    assert (error["type"], error["level"], error["id"], error["window"]) == ("budget_exceeded", "team", "t1", "monthly")
    assert len(openai.received) == 1


def test_401_and_403_through_envoy(document, upstreams):
    """Missing or unknown keys get 401, a foreign team header 403, and nothing goes upstream."""
    openai, _ = upstreams
    with Stack(document) as stack:
        missing = stack.post("/v1/chat/completions", chat())
        unknown = stack.post("/v1/chat/completions", chat(), {"authorization": "Bearer sk-unknown"})
        foreign = stack.post("/v1/chat/completions", chat(), auth(**{"lynkr-team-id": "t-other"}))
    assert missing.status == 401
    assert missing.json()["error"]["type"] == "authentication_error"
    assert unknown.status == 401
    assert foreign.status == 403
    assert foreign.json()["error"]["type"] == "permission_error"
    assert openai.received == []


def test_spoofed_routing_and_tenant_headers_have_no_effect(document, upstreams):
    """A client naming its own upstream or tier still lands on the tier the service chose."""
    openai, anthropic = upstreams
    headers = auth(**{"x-lynkr-upstream": "anthropic", "lynkr-tier": "COMPLEX", "lynkr-team-id": "t1", "lynkr-org-id": "o1"})
    with Stack(document) as stack:
        response = stack.post("/v1/chat/completions", chat(), headers)
        records = stack.records()
    assert response.status == 200
    assert len(openai.received) == 1
    assert anthropic.received == []
    sent = openai.received[0].headers
    assert not [name for name in sent if name.startswith(("lynkr-", "x-lynkr-"))]
    assert "x-api-key" not in sent
    assert sent["authorization"] == "Bearer provider-secret-openai"
    assert records[0]["team"] == "t1"


def test_concurrent_requests_never_overspend(document, upstreams):
    """200 concurrent requests against a budget that fits 50: exactly 50 are admitted."""
    openai, _ = upstreams
    openai.choose = Reply.json({"choices": [], "usage": {"prompt_tokens": 100, "completion_tokens": 100}})
    # Each request holds and then costs 100 input + 100 output tokens of
    # gpt-4o-mini: 100*0.15 + 100*0.60 per million = 75,000 nano-dollars.
    per_request = 75_000
    document["budgets"] = {"team": {"t1": [{"period": "month", "limit_usd": 50 * per_request / 10**9}]}}
    body = chat(max_tokens=100, messages=[{"role": "user", "content": "x" * 400}])
    barrier = threading.Barrier(200)

    def send(stack: Stack) -> int:
        barrier.wait(30)
        return stack.post("/v1/chat/completions", body, auth(), timeout_s=60).status

    with Stack(document) as stack:
        with ThreadPoolExecutor(200) as pool:
            statuses = list(pool.map(lambda _: send(stack), range(200)))
        records = stack.records()
        with sqlite3.connect(stack.config.store_url[len("sqlite:///"):]) as db:
            committed = db.execute("SELECT sum(committed) FROM budget_counters").fetchone()[0]
        holds = stack.holds()
    print(f"concurrency: admitted={statuses.count(200)} rejected={statuses.count(429)} committed_nanos={committed} holds={holds}")
    assert statuses.count(200) == 50
    assert statuses.count(429) == 150
    assert len(records) == 50
    assert committed == 50 * per_request
    assert holds == 0


def test_client_disconnect_mid_stream_is_billed(document, upstreams):
    """A client that hangs up mid-stream is billed for input and the text it got."""
    _, anthropic = upstreams
    events = [
        {"type": "message_start", "message": {"model": "claude-sonnet-4", "usage": {"input_tokens": 25, "output_tokens": 1}}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Once upon a time"}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": ", in a lighthouse"}},
    ]
    chunks = [f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events]
    anthropic.choose = Reply.sse(chunks, hang_after=True)
    with Stack(document) as stack:
        client = socket.create_connection(("127.0.0.1", stack.port), timeout=10)
        body = json.dumps(messages(stream=True)).encode()
        head = (
            f"POST /v1/messages HTTP/1.1\r\nhost: gateway\r\ncontent-type: application/json\r\n"
            f"x-api-key: {cases.secret('vk-a')}\r\ncontent-length: {len(body)}\r\n\r\n"
        )
        client.sendall(head.encode() + body)
        received = b""
        while b"lighthouse" not in received:
            piece = client.recv(65536)
            assert piece, "connection closed before the stream arrived"
            received += piece
        client.close()
        assert anthropic.closed_early.wait(10)
        deadline = time.monotonic() + 10
        records = stack.records()
        while not records and time.monotonic() < deadline:
            time.sleep(0.05)
            records = stack.records()
    assert len(records) == 1
    record = records[0]
    assert record["outcome"] == "partial"
    assert (record["input_tokens"], record["output_tokens"]) == (25, 9)
    assert record["cost_nanos"] == 210_000


def test_gzip_client_gets_gzip_and_spend_is_exact(document, upstreams):
    """The upstream is asked for identity, the client still receives gzip, usage is read."""
    openai, _ = upstreams
    with Stack(document) as stack:
        response = stack.post("/v1/chat/completions", chat(), auth(**{"accept-encoding": "gzip, deflate, br, zstd"}))
        records = stack.records()
    assert "accept-encoding" not in openai.received[0].headers
    assert response.headers.get("content-encoding") in ("gzip", "br", "zstd")
    assert records[0]["cost_nanos"] == nanos(fixture_usage("openai/chat_completion"), cases.PRICES["gpt-4o-mini"])


def test_upstream_that_compresses_anyway_is_metered(document, upstreams):
    """An upstream sending gzip without being asked is decoded for metering, forwarded as is."""
    openai, _ = upstreams
    body = (FIXTURES / "openai/chat_completion.body").read_bytes()
    openai.choose = Reply(headers={"content-type": "application/json", "content-encoding": "gzip"}, chunks=[gzip.compress(body)])
    with Stack(document) as stack:
        response = stack.post("/v1/chat/completions", chat(), auth())
        records = stack.records()
    assert gzip.decompress(response.body) == body
    assert records[0]["usage_source"] == "reported"
    assert records[0]["cost_nanos"] == nanos(fixture_usage("openai/chat_completion"), cases.PRICES["gpt-4o-mini"])


def test_large_prompt_is_not_413(document, upstreams):
    """C35: a 1.5 MB request passes Envoy's buffers, is routed and budgeted."""
    openai, _ = upstreams
    history = [{"role": "user", "content": "y" * 1000} for _ in range(1500)]
    with Stack(document) as stack:
        response = stack.post("/v1/chat/completions", chat("gpt-4o", messages=history), auth())
        records = stack.records()
    assert response.status == 200
    assert len(openai.received[0].body) > 1_500_000
    assert records[0]["tier"] == "MEDIUM"


def test_body_above_service_maximum_gets_json_413(document, upstreams):
    """C35: a 40 MB body, above the 32 MiB maximum, gets a JSON 413 and goes nowhere."""
    openai, _ = upstreams
    big = json.dumps(chat("gpt-4o", messages=[{"role": "user", "content": "z" * 40_000_000}])).encode()
    with Stack(document) as stack:
        response = stack.post("/v1/chat/completions", big, auth(), timeout_s=120)
    assert response.status == 413
    assert response.json()["error"]["type"] == "request_too_large"
    assert openai.received == []


def test_slow_store_gives_service_503_not_envoy_504(document, upstreams):
    """C33: a locked store gives the service's 503 within its deadline, below Envoy's message_timeout."""
    openai, _ = upstreams
    document["server"]["store_timeout_ms"] = 300
    with Stack(document) as stack:
        blocker = sqlite3.connect(stack.config.store_url[len("sqlite:///"):], timeout=0)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            response = stack.post("/v1/chat/completions", chat(), auth())
        finally:
            blocker.rollback()
            blocker.close()
    assert response.status == 503
    assert response.json()["error"]["type"] == "budget_unavailable"
    assert openai.received == []


def test_model_routing_from_body_phase_c31(document, upstreams):
    """C31: the tier chosen from the body's model decides the cluster Envoy uses."""
    openai, anthropic = upstreams
    anthropic.choose = Reply.fixture("anthropic/message")
    with Stack(document) as stack:
        response = stack.post("/v1/messages", messages("claude-haiku-4-5"), auth())
    assert response.status == 200
    assert len(anthropic.received) == 1
    assert anthropic.received[0].json()["model"] == "claude-haiku-4-5"
    assert openai.received == []


def test_non_llm_path_is_proxied_with_credentials(document, upstreams):
    """GET /v1/models goes to the default tier's upstream with the provider key."""
    openai, _ = upstreams
    openai.choose = Reply.json({"object": "list", "data": []})
    with Stack(document) as stack:
        connection = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=10)
        connection.request("GET", "/v1/models", headers=auth())
        response = connection.getresponse()
        response.read()
        records = stack.records()
    assert response.status == 200
    assert openai.received[0].path == "/v1/models"
    assert openai.received[0].headers["authorization"] == "Bearer provider-secret-openai"
    assert records == []


def test_unreachable_upstream_releases_the_hold(document, upstreams, tmp_path):
    """A connect failure reaches the client as 503 and settles a failed, free record."""
    document["upstreams"]["openai"]["url"] = f"http://127.0.0.1:{cases.free_port()}"
    with Stack(document) as stack:
        response = stack.post("/v1/chat/completions", chat(), auth())
        records = stack.records()
        holds = stack.holds()
    assert response.status == 503
    assert len(records) == 1
    assert (records[0]["status"], records[0]["outcome"], records[0]["cost_nanos"]) == (503, "failed", 0)
    assert holds == 0
