"""Tier selection through the real server: score, stickiness, downgrade."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from lynkr_extproc import gateway
from lynkr_extproc.store import open_store
from tests.support import cases
from tests.support.grpc_client import immediate_json, request_body, request_headers
from tests.support.backends import BACKENDS, backend_settings
from tests.support.harness import Harness

TOOLS = [
    {"type": "function", "function": {"name": name, "parameters": {"type": "object"}}}
    for name in ("Bash", "Write", "Edit", "Read", "Grep", "Glob", "WebFetch", "TodoWrite")
]


@pytest.fixture(params=BACKENDS)
def document(request, tmp_path: Path):
    """Each test runs on every budget store backend."""
    for settings in backend_settings(request.param, tmp_path):
        yield _routing_document(settings)


def _routing_document(settings: dict) -> dict:
    document = cases.document(settings)
    document["tiers"]["COMPLEX"] = {"upstream": "openai", "model": "fw-model"}
    document["routing"]["aliases"] = {}
    return document


def send(harness: Harness, body: dict, **headers: str):
    stream = harness.stream()
    first = stream.send(request_headers("/v1/chat/completions", {"x-api-key": cases.secret("vk-a"), **headers}))
    assert first.WhichOneof("response") == "request_headers", first
    return stream.send(request_body(body))


def routed_model(reply, sent: dict | None = None) -> str:
    """Return the model the upstream gets: the rewritten body's, else the one sent."""
    assert reply.WhichOneof("response") == "request_body", reply
    response = reply.request_body.response
    if response.HasField("body_mutation"):
        return json.loads(response.body_mutation.body)["model"]
    assert sent is not None, "the body was not rewritten"
    return sent["model"]


def greeting() -> dict:
    return {"model": "client-model", "messages": [{"role": "user", "content": "hi"}]}


def agent_turn(*, tool_loop: bool) -> dict:
    history = [{"role": "user", "content": "Implement a function that parses the config and refactor the loader."}]
    for index in range(10):
        history.append({"role": "assistant", "content": None, "tool_calls": [{"id": f"t{index}", "type": "function", "function": {"name": "Bash", "arguments": "{}"}}]})
        history.append({"role": "tool", "tool_call_id": f"t{index}", "content": "ok " * 200})
    if not tool_loop:
        history.append({"role": "user", "content": "Now implement the parser and write tests.\n```python\npass\n```"})
    return {"model": "client-model", "tools": TOOLS, "messages": history}


def test_score_picks_tier(document):
    """A greeting goes to SIMPLE, an agent turn with tools and code to a higher tier."""
    with Harness(document) as harness:
        assert routed_model(send(harness, greeting())) == "gpt-4o-mini"
        assert routed_model(send(harness, agent_turn(tool_loop=False))) in ("fw-model", "reasoner-x")


def test_conversation_sticks_to_its_tier(document):
    """A session stays on its tier for a simpler follow-up."""
    with Harness(document) as harness:
        high = routed_model(send(harness, agent_turn(tool_loop=False), **{"x-claude-code-session-id": "s1"}))
        again = send(harness, greeting(), **{"x-claude-code-session-id": "s1"})
    assert routed_model(again) == high


def test_tool_loop_never_changes_provider(document):
    """In a tool loop the pinned tier wins even when the score rises."""
    with Harness(document) as harness:
        assert routed_model(send(harness, greeting(), **{"session-id": "s2"})) == "gpt-4o-mini"
        loop = send(harness, agent_turn(tool_loop=True), **{"session-id": "s2"})
        escalated = send(harness, agent_turn(tool_loop=False), **{"session-id": "s2"})
    assert routed_model(loop) == "gpt-4o-mini"
    assert routed_model(escalated) != "gpt-4o-mini"


def pin_from_another_replica(config, session: str, tier: str) -> None:
    """Pin a session's tier through a second connection to the same store."""

    async def pin() -> None:
        store = await open_store(
            config.store_url,
            timeout_s=5.0,
            ledger_url=config.ledger_url,
            outbox_url=config.outbox_url,
        )
        try:
            await store.pin_session(session, tier, ttl_s=config.sticky_ttl_s)
        finally:
            await store.close()

    asyncio.run(pin())


def test_session_cache_expiry_reads_replica_pin(document, monkeypatch):
    """A replica reuses its own pin for SESSION_CACHE_S, then reads the store's."""
    monkeypatch.setattr(gateway, "SESSION_CACHE_S", 0.5)
    headers = {"session-id": "s4"}
    with Harness(document) as harness:
        assert routed_model(send(harness, greeting(), **headers)) == "gpt-4o-mini"
        pin_from_another_replica(harness.config, "vk-a:h:s4", "COMPLEX")
        cached = send(harness, greeting(), **headers)
        time.sleep(0.6)
        refreshed = send(harness, greeting(), **headers)
    assert routed_model(cached, greeting()) == "gpt-4o-mini"
    assert routed_model(refreshed) == "fw-model"


def test_conversation_without_session_header_sticks_by_first_messages(document):
    """Without a session header the first messages identify the conversation."""
    first = agent_turn(tool_loop=False)
    follow_up = dict(first, messages=first["messages"][:1] + [{"role": "user", "content": "thanks"}])
    with Harness(document) as harness:
        high = routed_model(send(harness, first))
        assert routed_model(send(harness, follow_up), follow_up) == high


def test_budget_downgrade_routes_to_cheaper_tier(document):
    """With budget_downgrade, a request that does not fit MEDIUM runs on SIMPLE."""
    document["routing"]["budget_downgrade"] = True
    document["routing"]["aliases"] = {"gpt-4o": "MEDIUM"}
    document["budgets"] = {"team": {"t1": [{"period": "month", "limit_usd": 0.01}]}}
    body = {"model": "gpt-4o", "max_tokens": 1000, "messages": [{"role": "user", "content": "x" * 4000}]}
    with Harness(document) as harness:
        reply = send(harness, body)
    assert routed_model(reply, body) == "gpt-4o-mini"


def test_without_downgrade_the_request_is_rejected(document):
    """Without budget_downgrade the same request gets 429."""
    document["routing"]["aliases"] = {"gpt-4o": "MEDIUM"}
    document["budgets"] = {"team": {"t1": [{"period": "month", "limit_usd": 0.01}]}}
    body = {"model": "gpt-4o", "max_tokens": 1000, "messages": [{"role": "user", "content": "x" * 4000}]}
    with Harness(document) as harness:
        assert immediate_json(send(harness, body))[0] == 429


def huge_cap() -> dict:
    return {"model": "gpt-4o-mini", "max_tokens": 128000, "messages": [{"role": "user", "content": "hi"}]}


def test_output_hold_is_bounded_by_ceiling(document):
    """A 128k max_tokens holds only the tier's ceiling: $0.0025 fits a $0.05 budget."""
    document["routing"]["aliases"] = {"gpt-4o-mini": "SIMPLE"}
    document["budgets"] = {"team": {"t1": [{"period": "month", "limit_usd": 0.05}]}}
    with Harness(document) as harness:
        assert routed_model(send(harness, huge_cap()), huge_cap()) == "gpt-4o-mini"


def test_strict_mode_holds_the_full_cap(document):
    """strict_output_hold reserves all 128k tokens ($0.0768), which a $0.05 budget rejects."""
    document["routing"]["aliases"] = {"gpt-4o-mini": "SIMPLE"}
    document["budgets"] = {"strict_output_hold": True, "team": {"t1": [{"period": "month", "limit_usd": 0.05}]}}
    with Harness(document) as harness:
        assert immediate_json(send(harness, huge_cap()))[0] == 429


def test_expired_holds_stop_counting(document):
    """A hold left by a stream that never finished expires after hold_ttl_s."""
    document["routing"]["aliases"] = {"gpt-4o-mini": "SIMPLE"}
    # One request holds 1 input + 4096 output tokens: about $0.00246.
    document["budgets"] = {"hold_ttl_s": 1, "team": {"t1": [{"period": "month", "limit_usd": 0.003}]}}
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    with Harness(document) as harness:
        assert routed_model(send(harness, body), body) == "gpt-4o-mini"
        assert immediate_json(send(harness, body))[0] == 429
        time.sleep(1.2)  # past the hold's expiry, which is what this test checks
        assert routed_model(send(harness, body), body) == "gpt-4o-mini"
