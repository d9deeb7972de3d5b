"""Every provider and every client API through a real Envoy, translated and not.

Upstreams replay recorded provider responses (tests/fixtures/recorded/);
Bedrock's event stream and Ollama's NDJSON are built from those recorded
events in their providers' framing.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from lynkr_extproc.framing import encode_event_stream
from lynkr_extproc.sse import SSEDecoder
from tests.support import cases
from tests.support.stack import Stack
from tests.support.upstream import FIXTURES, ReplayUpstream, Reply

pytestmark = pytest.mark.e2e

PRICES = {
    "local-model": {"input": 1.0, "output": 2.0},
    "claude-sonnet-4": {"input": 3.00, "cache_read": 0.30, "cache_write": 3.75, "output": 15.00},
    "gpt-4o-mini": {"input": 0.15, "cache_read": 0.075, "output": 0.60},
    "anthropic.claude-sonnet-4": {"input": 3.00, "cache_read": 0.30, "cache_write": 3.75, "output": 15.00},
}

UPSTREAMS = ("llamacpp", "ollama", "anthropic", "openai", "azure", "databricks", "openrouter", "bedrock", "lmstudio")


def fixture_usage(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())["usage"]


def nanos(usage: dict, price: dict) -> int:
    total = (
        usage["input_tokens"] * price["input"]
        + usage.get("cache_read_tokens", 0) * price.get("cache_read", price["input"])
        + usage.get("cache_write_tokens", 0) * price.get("cache_write", price["input"])
        + usage["output_tokens"] * price["output"]
    )
    return round(total * 1000)


@pytest.fixture
def upstreams():
    servers = {name: ReplayUpstream() for name in UPSTREAMS}
    for server in servers.values():
        server.__enter__()
    yield servers
    for server in servers.values():
        server.__exit__(None, None, None)


@pytest.fixture
def document(tmp_path: Path, upstreams) -> dict:
    document = cases.document(tmp_path / "store.db")
    document["upstreams"] = {
        name: {"provider": name, "url": server.url, "api_key": f"provider-secret-{name}"}
        for name, server in upstreams.items()
    }
    document["upstreams"]["azure"]["api_version"] = "2024-10-21"
    document["upstreams"]["openrouter"]["headers"] = {"HTTP-Referer": "https://lynkr.test", "X-Title": "lynkr"}
    document["tiers"] = {"SIMPLE": {"upstream": "openai", "model": "gpt-4o-mini"}}
    document["routing"] = {
        "bands": {"SIMPLE": 100},
        "aliases": {
            f"to-{name}": {"upstream": name, "model": "claude-sonnet-4" if name == "anthropic" else "local-model"}
            for name in UPSTREAMS
        },
    }
    document["routing"]["aliases"]["to-bedrock"] = {"upstream": "bedrock", "model": "anthropic.claude-sonnet-4"}
    document["pricing"]["models"] = PRICES
    document["budgets"] = {"team": {"t1": [{"period": "month", "limit_usd": 100}]}}
    return document


def auth() -> dict[str, str]:
    return {"x-api-key": cases.secret("vk-a")}


def anthropic_request(model: str, *, stream: bool) -> dict:
    return {
        "model": model,
        "max_tokens": 1024,
        "stream": stream,
        "system": [{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}],
        "thinking": {"type": "adaptive"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "tools": [{"name": "Bash", "description": "Run a command", "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}}}],
        "messages": [{"role": "user", "content": "Hello"}],
    }


def chat_request(model: str, *, stream: bool) -> dict:
    return {"model": model, "stream": stream, "messages": [{"role": "user", "content": "Hello"}]}


def sse_events(body: bytes) -> list:
    return SSEDecoder().feed(body)


def assert_valid_anthropic_stream(body: bytes) -> list:
    events = sse_events(body)
    kinds = [event.event for event in events]
    assert kinds[0] == "message_start"
    assert kinds[-1] == "message_stop"
    assert "message_delta" in kinds
    for event in events:
        assert json.loads(event.data)["type"] == event.event
    return events


def assert_valid_chat_stream(body: bytes) -> list:
    events = sse_events(body)
    assert events[-1].data == "[DONE]"
    chunks = [json.loads(event.data) for event in events[:-1]]
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    return chunks


def test_claude_code_on_a_chat_tier_streams_anthropic(document, upstreams):
    """An Anthropic streaming request on a llama.cpp tier is translated both ways and priced."""
    upstreams["llamacpp"].choose = Reply.fixture("openai/chat_completion_stream")
    with Stack(document) as stack:
        response = stack.post("/v1/messages?beta=true", anthropic_request("to-llamacpp", stream=True), auth())
        records = stack.records()
    received = upstreams["llamacpp"].received[0]
    assert response.status == 200
    assert response.headers["content-type"] == "text/event-stream"
    events = assert_valid_anthropic_stream(response.body)
    assert received.path == "/v1/chat/completions"
    sent = received.json()
    assert sent["model"] == "local-model"
    assert sent["messages"][0]["role"] == "system"
    assert sent["stream_options"] == {"include_usage": True}
    assert sent["tools"][0]["function"]["name"] == "Bash"
    assert "thinking" not in sent
    assert "context_management" not in sent
    assert received.headers["authorization"] == "Bearer provider-secret-llamacpp"
    final = json.loads(events[-2].data)
    usage = fixture_usage("openai/chat_completion_stream")
    assert final["usage"]["output_tokens"] == usage["output_tokens"]
    assert records[0]["cost_nanos"] == nanos(usage, PRICES["local-model"])
    assert records[0]["provider"] == "llamacpp"


def test_claude_code_on_a_chat_tier_json(document, upstreams):
    """A buffered Anthropic request on an Ollama tier gets an Anthropic message back."""
    upstreams["ollama"].choose = Reply.fixture("openai/chat_completion")
    with Stack(document) as stack:
        response = stack.post("/v1/messages", anthropic_request("to-ollama", stream=False), auth())
        records = stack.records()
    message = response.json()
    assert response.status == 200
    assert message["type"] == "message"
    assert message["role"] == "assistant"
    assert message["content"][0]["type"] == "text"
    assert upstreams["ollama"].received[0].path == "/v1/chat/completions"
    assert records[0]["cost_nanos"] == nanos(fixture_usage("openai/chat_completion"), PRICES["local-model"])


def test_cursor_on_a_claude_tier_streams_chat(document, upstreams):
    """A Chat Completions stream on an Anthropic tier is translated and ends with [DONE]."""
    upstreams["anthropic"].choose = Reply.fixture("anthropic/message_stream")
    with Stack(document) as stack:
        response = stack.post("/v1/chat/completions", chat_request("to-anthropic", stream=True), auth())
        records = stack.records()
    received = upstreams["anthropic"].received[0]
    chunks = assert_valid_chat_stream(response.body)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert response.status == 200
    assert received.path == "/v1/messages"
    assert received.headers["x-api-key"] == "provider-secret-anthropic"
    assert received.json()["max_tokens"] > 0
    assert text
    assert records[0]["cost_nanos"] == nanos(fixture_usage("anthropic/message_stream"), PRICES["claude-sonnet-4"])


def test_cursor_on_a_claude_tier_json(document, upstreams):
    """A buffered Chat Completions request on an Anthropic tier gets a chat.completion."""
    upstreams["anthropic"].choose = Reply.fixture("anthropic/message_tool_use")
    with Stack(document) as stack:
        response = stack.post("/v1/chat/completions", chat_request("to-anthropic", stream=False), auth())
        records = stack.records()
    completion = response.json()
    assert completion["object"] == "chat.completion"
    assert completion["choices"][0]["message"]["tool_calls"]
    assert completion["choices"][0]["finish_reason"] == "tool_calls"
    assert records[0]["cost_nanos"] == nanos(fixture_usage("anthropic/message_tool_use"), PRICES["claude-sonnet-4"])


def test_codex_on_a_chat_tier(document, upstreams):
    """A Responses stream on a chat-only tier is translated to Responses events."""
    upstreams["lmstudio"].choose = Reply.fixture("openai/chat_completion_stream")
    body = {"model": "to-lmstudio", "stream": True, "input": "Hello", "store": False,
            "reasoning": {"effort": "medium"}, "include": ["reasoning.encrypted_content"], "prompt_cache_key": "k"}
    with Stack(document) as stack:
        response = stack.post("/v1/responses", body, auth())
        records = stack.records()
    events = sse_events(response.body)
    kinds = [event.event for event in events]
    sent = upstreams["lmstudio"].received[0].json()
    assert response.status == 200
    assert kinds[0] == "response.created"
    # The recorded stream stops at its token limit (finish_reason "length").
    assert kinds[-1] == "response.incomplete"
    final = json.loads(events[-1].data)["response"]
    assert final["incomplete_details"]["reason"] == "max_output_tokens"
    assert "prompt_cache_key" not in sent
    assert "include" not in sent
    assert records[0]["cost_nanos"] == nanos(fixture_usage("openai/chat_completion_stream"), PRICES["local-model"])


def test_codex_on_a_claude_tier_streams_responses(document, upstreams):
    """A Responses stream on an Anthropic tier runs through chat both ways and is priced."""
    upstreams["anthropic"].choose = Reply.fixture("anthropic/message_stream")
    body = {
        "model": "to-anthropic", "stream": True, "store": False, "instructions": "You are Codex.",
        "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hello"}]}],
        "include": ["reasoning.encrypted_content"], "prompt_cache_key": "k",
        "tools": [{"type": "function", "name": "shell", "description": "Runs a command",
                   "parameters": {"type": "object", "properties": {"command": {"type": "string"}}}}],
    }

    with Stack(document) as stack:
        response = stack.post("/v1/responses", body, auth())
        records = stack.records()

    received = upstreams["anthropic"].received[0]
    sent = received.json()
    events = sse_events(response.body)
    final = json.loads(events[-1].data)["response"]
    usage = fixture_usage("anthropic/message_stream")

    assert response.status == 200
    assert response.headers["content-type"] == "text/event-stream"
    assert received.path == "/v1/messages"
    assert received.headers["x-api-key"] == "provider-secret-anthropic"
    assert sent["model"] == "claude-sonnet-4"
    assert sent["system"] == "You are Codex."
    assert sent["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Hello"}]}]
    assert sent["max_tokens"] == 4096
    assert sent["stream"] is True
    assert sent["tools"][0]["name"] == "shell"
    assert "include" not in sent
    assert "store" not in sent
    assert events[0].event == "response.created"
    assert events[-1].event == "response.completed"
    assert final["output"][0]["content"][0]["text"] == "Hello!"
    assert final["usage"]["input_tokens"] == usage["input_tokens"]
    assert final["usage"]["output_tokens"] == usage["output_tokens"]
    assert records[0]["provider"] == "anthropic"
    assert records[0]["cost_nanos"] == nanos(usage, PRICES["claude-sonnet-4"])


def test_bedrock_event_stream_reframed_for_claude_code(document, upstreams):
    """Bedrock's event stream of Anthropic events reaches the client as SSE."""
    recorded = sse_events((FIXTURES / "anthropic/message_stream.body").read_bytes())
    frames = [
        encode_event_stream("chunk", json.dumps({"bytes": base64.b64encode(e.data.encode()).decode()}).encode())
        for e in recorded
    ]
    upstreams["bedrock"].choose = Reply(headers={"content-type": "application/vnd.amazon.eventstream"}, chunks=frames)
    with Stack(document) as stack:
        response = stack.post("/v1/messages", anthropic_request("to-bedrock", stream=True), {**auth(), "anthropic-beta": "context-1m-2025-08-07"})
        records = stack.records()
    received = upstreams["bedrock"].received[0]
    assert response.status == 200
    assert response.headers["content-type"] == "text/event-stream"
    assert_valid_anthropic_stream(response.body)
    assert received.path == "/model/anthropic.claude-sonnet-4/invoke-with-response-stream"
    assert received.headers["authorization"] == "Bearer provider-secret-bedrock"
    sent = received.json()
    assert sent["anthropic_version"] == "bedrock-2023-05-31"
    assert sent["anthropic_beta"] == ["context-1m-2025-08-07"]
    assert "model" not in sent
    assert records[0]["cost_nanos"] == nanos(fixture_usage("anthropic/message_stream"), PRICES["anthropic.claude-sonnet-4"])


def test_azure_deployment_path(document, upstreams):
    """Azure gets the deployment path, api-version and api-key header."""
    upstreams["azure"].choose = Reply.fixture("openai/chat_completion")
    with Stack(document) as stack:
        response = stack.post("/v1/chat/completions", chat_request("to-azure", stream=False), auth())
    received = upstreams["azure"].received[0]
    assert response.status == 200
    assert received.path == "/openai/deployments/local-model/chat/completions?api-version=2024-10-21"
    assert received.headers["api-key"] == "provider-secret-azure"
    assert "authorization" not in received.headers


def test_databricks_invocations(document, upstreams):
    """Databricks gets its serving-endpoint path and a bearer token."""
    upstreams["databricks"].choose = Reply.fixture("openai/chat_completion")
    with Stack(document) as stack:
        response = stack.post("/v1/chat/completions", chat_request("to-databricks", stream=False), auth())
    received = upstreams["databricks"].received[0]
    assert response.status == 200
    assert received.path == "/serving-endpoints/local-model/invocations"
    assert received.headers["authorization"] == "Bearer provider-secret-databricks"


def test_openrouter_cost_recorded_beside_ours(document, upstreams):
    """OpenRouter's usage.cost is recorded next to the computed cost."""
    completion = json.loads((FIXTURES / "openai/chat_completion.body").read_bytes())
    completion["usage"]["cost"] = 0.000123
    upstreams["openrouter"].choose = Reply.json(completion)
    with Stack(document) as stack:
        stack.post("/v1/chat/completions", chat_request("to-openrouter", stream=False), auth())
        records = stack.records()
    received = upstreams["openrouter"].received[0]
    assert received.json()["usage"] == {"include": True}
    assert received.headers["http-referer"] == "https://lynkr.test"
    assert records[0]["provider_cost_nanos"] == 123_000
    assert records[0]["cost_nanos"] == nanos(fixture_usage("openai/chat_completion"), PRICES["local-model"])


def test_ollama_native_chat(document, upstreams):
    """A native /api/chat stream is metered from its final NDJSON object."""
    lines = [
        {"model": "local-model", "message": {"role": "assistant", "content": "Hi"}, "done": False},
        {"model": "local-model", "message": {"role": "assistant", "content": ""}, "done": True, "prompt_eval_count": 12, "eval_count": 5},
    ]
    upstreams["ollama"].choose = Reply(
        headers={"content-type": "application/x-ndjson"},
        chunks=[json.dumps(line).encode() + b"\n" for line in lines],
    )
    body = {"model": "to-ollama", "messages": [{"role": "user", "content": "Hello"}]}
    with Stack(document) as stack:
        response = stack.post("/api/chat", body, auth())
        records = stack.records()
    assert response.status == 200
    assert upstreams["ollama"].received[0].path == "/api/chat"
    assert response.body.count(b"\n") == 2
    assert records[0]["input_tokens"] == 12
    assert records[0]["output_tokens"] == 5
    assert records[0]["cost_nanos"] == 12 * 1000 + 5 * 2000


def test_untranslatable_request_gets_client_format_error(document, upstreams):
    """A Responses request with previous_response_id cannot go to a chat tier: 400, nothing sent."""
    body = {"model": "to-llamacpp", "input": "Hello", "previous_response_id": "resp_1"}
    with Stack(document) as stack:
        response = stack.post("/v1/responses", body, auth())
    assert response.status == 400
    assert "previous_response_id" in response.json()["error"]["message"]
    assert upstreams["llamacpp"].received == []
