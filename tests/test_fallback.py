"""A tier's fallback chain through a real Envoy: each attempt is prepared for its own provider."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lynkr_extproc.sse import SSEDecoder
from tests.support import cases
from tests.support.ports import free_port
from tests.support.stack import Stack
from tests.support.upstream import FIXTURES, ReplayUpstream, Reply

pytestmark = pytest.mark.e2e

PRICES = {
    "claude-sonnet-4": {"input": 3.00, "cache_read": 0.30, "cache_write": 3.75, "output": 15.00},
    "local-model": {"input": 1.0, "output": 2.0},
    "gpt-4o-mini": {"input": 0.15, "cache_read": 0.075, "output": 0.60},
}


@pytest.fixture
def upstreams():
    primary = ReplayUpstream(Reply.fixture("anthropic/message_stream"))
    backup = ReplayUpstream(Reply.fixture("openai/chat_completion_stream"))
    with primary, backup:
        yield primary, backup


def make_document(tmp_path: Path, primary_url: str, backup_url: str) -> dict:
    document = cases.document(tmp_path / "store.db")
    document["upstreams"] = {
        "claude": {"provider": "anthropic", "url": primary_url, "api_key": "provider-secret-claude"},
        "local": {"provider": "llamacpp", "url": backup_url, "api_key": "provider-secret-local"},
        "openai": {"provider": "openai", "url": backup_url, "api_key": "provider-secret-openai"},
    }
    document["tiers"] = {
        "SIMPLE": {"upstream": "openai", "model": "gpt-4o-mini"},
        "COMPLEX": {
            "upstream": "claude",
            "model": "claude-sonnet-4",
            "fallback": [{"upstream": "local", "model": "local-model"}],
        },
    }
    document["routing"] = {"bands": {"SIMPLE": 19, "COMPLEX": 100}, "aliases": {"big": "COMPLEX"}}
    document["pricing"]["models"] = PRICES
    document["budgets"] = {"team": {"t1": [{"period": "month", "limit_usd": 100}]}}
    return document


@pytest.fixture
def document(tmp_path: Path, upstreams) -> dict:
    primary, backup = upstreams
    return make_document(tmp_path, primary.url, backup.url)


def request() -> dict:
    return {"model": "big", "max_tokens": 512, "stream": True, "messages": [{"role": "user", "content": "Hello"}]}


def auth() -> dict[str, str]:
    return {"x-api-key": cases.secret("vk-a")}


def fixture_usage(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())["usage"]


def holds(stack: Stack) -> int:
    return stack.holds()


def anthropic_events(body: bytes) -> list[str]:
    return [event.event for event in SSEDecoder().feed(body)]


def test_primary_serves_when_healthy(document, upstreams):
    """A healthy primary serves the request; the fallback is never called."""
    primary, backup = upstreams
    with Stack(document) as stack:
        response = stack.post("/v1/messages", request(), auth())
        records = stack.records()
    assert response.status == 200
    assert response.headers["x-lynkr-model"] == "claude-sonnet-4"
    assert "x-lynkr-served-by" not in response.headers
    assert len(primary.received) == 1
    assert backup.received == []
    assert primary.received[0].headers["x-api-key"] == "provider-secret-claude"
    assert records[0]["provider"] == "anthropic"


def test_chat_client_fallback_keeps_usage_chunk(tmp_path: Path, upstreams):
    """A chat client's include_usage survives a fallback translated to Anthropic."""
    claude, local = upstreams
    local.choose = Reply.json({"error": {"message": "busy"}}, status=503)
    document = make_document(tmp_path, claude.url, local.url)
    document["tiers"]["COMPLEX"] = {
        "upstream": "local",
        "model": "local-model",
        "fallback": [{"upstream": "claude", "model": "claude-sonnet-4"}],
    }
    body = dict(request(), stream_options={"include_usage": True})
    with Stack(document) as stack:
        response = stack.post("/v1/chat/completions", body, auth())
        records = stack.records()
    events = SSEDecoder().feed(response.body)
    chunks = [json.loads(event.data) for event in events if event.data != "[DONE]"]
    usage = fixture_usage("anthropic/message_stream")
    assert response.status == 200
    assert response.headers["x-lynkr-model"] == "claude-sonnet-4"
    assert events[-1].data == "[DONE]"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] == usage["output_tokens"]
    assert records[0]["provider"] == "anthropic"


@pytest.mark.parametrize("status", [503, 429, 500])
def test_failed_primary_falls_back_with_translation(document, upstreams, status):
    """A primary returning 5xx or 429 is retried on the llama.cpp fallback, translated."""
    primary, backup = upstreams
    primary.choose = Reply.json({"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}, status=status)
    with Stack(document) as stack:
        response = stack.post("/v1/messages?beta=true", request(), auth())
        records = stack.records()
        left = holds(stack)
    assert response.status == 200
    kinds = anthropic_events(response.body)
    assert kinds[0] == "message_start"
    assert kinds[-1] == "message_stop"
    assert response.headers["x-lynkr-model"] == "local-model"
    assert "fallback:local" in response.headers["x-lynkr-routing-reason"]
    assert "x-lynkr-served-by" not in response.headers
    assert len(primary.received) == 1
    assert primary.received[0].json()["model"] == "claude-sonnet-4"
    sent = backup.received[0]
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == "Bearer provider-secret-local"
    assert "x-api-key" not in sent.headers
    assert not [name for name in sent.headers if name.startswith("x-lynkr")]
    assert sent.json()["model"] == "local-model"
    assert len(records) == 1
    record = records[0]
    usage = fixture_usage("openai/chat_completion_stream")
    assert (record["provider"], record["upstream"], record["model"]) == ("llamacpp", "local", "local-model")
    assert record["cost_nanos"] == usage["input_tokens"] * 1000 + usage["output_tokens"] * 2000
    assert left == 0


def test_unreachable_primary_falls_back(tmp_path: Path, upstreams):
    """A primary refusing connections is skipped for the fallback."""
    _, backup = upstreams
    document = make_document(tmp_path, f"http://127.0.0.1:{free_port()}", backup.url)
    with Stack(document) as stack:
        response = stack.post("/v1/messages", request(), auth())
        records = stack.records()
    assert response.status == 200
    assert records[0]["upstream"] == "local"


def test_every_member_failing_is_a_failed_record(document, upstreams):
    """When the whole chain fails, the client gets the last error and nothing is charged."""
    primary, backup = upstreams
    primary.choose = Reply.json({"error": "down"}, status=503)
    backup.choose = Reply.json({"error": {"message": "also down"}}, status=503)
    with Stack(document) as stack:
        response = stack.post("/v1/messages", request(), auth())
        records = stack.records()
        left = holds(stack)
    assert response.status == 503
    assert len(backup.received) == 1
    assert (records[0]["outcome"], records[0]["cost_nanos"]) == ("failed", 0)
    assert left == 0
