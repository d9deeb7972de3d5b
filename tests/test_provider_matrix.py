"""Every client API on every provider, buffered and streamed, through one real Envoy.

Each upstream replays a recorded response in the API its provider is
sent (the client's own API when the provider accepts it, else the one
the request is translated to), using the provider's own recording where
there is one. Every case checks the client's format and the exact cost
of the spend record.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lynkr_extproc.providers import PROVIDERS
from lynkr_extproc.sse import SSEDecoder
from tests.support import cases
from tests.support.stack import Stack
from tests.support.upstream import FIXTURES, ReplayUpstream, Reply
from tests.test_e2e_providers import nanos

pytestmark = pytest.mark.e2e

PRICE = {"input": 3.00, "cache_read": 0.30, "cache_write": 3.75, "output": 15.00}
CLIENTS = ("anthropic_messages", "openai_chat", "openai_responses")
CLIENT_PATHS = {
    "anthropic_messages": "/v1/messages",
    "openai_chat": "/v1/chat/completions",
    "openai_responses": "/v1/responses",
}

BY_API = {
    ("openai_chat", False): "openai/chat_completion",
    ("openai_chat", True): "openai/chat_completion_stream",
    ("openai_responses", False): "openai/responses",
    ("openai_responses", True): "openai/responses_stream",
    ("anthropic_messages", False): "anthropic/message",
    ("anthropic_messages", True): "anthropic/message_stream",
    ("bedrock_converse", False): "bedrock/converse_cache_read",
    ("bedrock_converse", True): "bedrock/converse_stream",
}
"""The recording used for an upstream API when its provider has none of its own."""

BY_PROVIDER = {
    ("bedrock", False): "bedrock/invoke_model",
    ("bedrock", True): "bedrock/invoke_model_stream",
    ("azure", False): "azure/chat_completion",
    ("azure", True): "azure/chat_completion_stream",
    ("openrouter", False): "openrouter/chat_completion",
    ("openrouter", True): "openrouter/chat_completion_stream",
    ("llamacpp", False): "llamacpp/chat_completion",
    ("lmstudio", False): "lmstudio/chat_completion",
    ("databricks", True): "databricks/chat_completion_stream",
    ("ollama", False): "ollama/openai_chat_completion",
}
"""Recordings of the providers themselves, used where they exist."""

CASES = [
    (provider, client, stream)
    for provider in sorted(PROVIDERS)
    for client in CLIENTS
    for stream in (False, True)
]


def recording(provider: str, client: str, stream: bool) -> str:
    api = PROVIDERS[provider].target_api(client)
    return BY_PROVIDER.get((provider, stream)) or BY_API[(api, stream)]


def cost_nanos(name: str) -> int:
    return nanos(json.loads((FIXTURES / f"{name}.json").read_text())["usage"], PRICE)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """One Envoy and ext_proc server with one upstream per provider."""
    servers = {name: ReplayUpstream() for name in PROVIDERS}
    for server in servers.values():
        server.__enter__()
    document = cases.document(tmp_path_factory.mktemp("matrix") / "store.db")
    document["upstreams"] = {
        name: {"provider": name, "url": server.url, "api_key": f"provider-secret-{name}"}
        for name, server in servers.items()
    }
    document["upstreams"]["azure"]["api_version"] = "2024-10-21"
    document["tiers"] = {"SIMPLE": {"upstream": "openai", "model": "matrix-model"}}
    document["routing"] = {
        "bands": {"SIMPLE": 100},
        "aliases": {f"to-{name}": {"upstream": name, "model": "matrix-model"} for name in servers},
    }
    document["pricing"]["models"] = {"matrix-model": PRICE}
    document["budgets"] = {"team": {"t1": [{"period": "month", "limit_usd": 1000}]}}
    try:
        with Stack(document) as running:
            yield running, servers
    finally:
        for server in servers.values():
            server.__exit__(None, None, None)


def client_request(client: str, model: str, stream: bool) -> dict:
    messages = [{"role": "user", "content": "Hello"}]
    if client == "anthropic_messages":
        return {"model": model, "max_tokens": 256, "stream": stream, "messages": messages}
    if client == "openai_chat":
        return {"model": model, "stream": stream, "messages": messages}
    return {"model": model, "stream": stream, "input": "Hello"}


def assert_client_format(client: str, stream: bool, body: bytes) -> None:
    if not stream:
        document = json.loads(body)
        expected = {"anthropic_messages": ("type", "message"), "openai_chat": ("object", "chat.completion"),
                    "openai_responses": ("object", "response")}[client]
        assert document[expected[0]] == expected[1], document
        return
    events = SSEDecoder().feed(body)
    if client == "anthropic_messages":
        assert events[0].event == "message_start"
        assert events[-1].event == "message_stop"
    elif client == "openai_chat":
        assert events[-1].data == "[DONE]"
        chunks = [json.loads(event.data) for event in events[:-1]]
        # Azure's first chunk, with prompt_filter_results, has an empty object field.
        assert all(isinstance(chunk["choices"], list) for chunk in chunks)
        assert "chat.completion.chunk" in {chunk["object"] for chunk in chunks}
    else:
        assert events[0].event == "response.created"
        assert events[-1].event in ("response.completed", "response.incomplete")


@pytest.mark.parametrize(("provider", "client", "stream"), CASES)
def test_client_on_provider(stack, provider: str, client: str, stream: bool):
    """The client gets its own API's response and the record costs the recorded usage."""
    running, servers = stack
    name = recording(provider, client, stream)
    servers[provider].choose = Reply.fixture(name)
    before = len(running.records())

    response = running.post(
        CLIENT_PATHS[client],
        client_request(client, f"to-{provider}", stream),
        {"x-api-key": cases.secret("vk-a")},
    )
    records = running.records()

    assert response.status == 200, response.body[:500]
    assert_client_format(client, stream, response.body)
    assert len(records) == before + 1
    assert records[-1]["provider"] == provider
    assert records[-1]["usage_source"] == "reported"
    assert records[-1]["cost_nanos"] == cost_nanos(name)
