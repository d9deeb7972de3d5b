"""Provider adapters: the upstream request of each provider."""

from __future__ import annotations

import pytest

from lynkr_extproc.providers import PROVIDERS, UpstreamTarget

CHAT = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
MESSAGES = {"model": "m", "stream": True, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
CONVERSE = {"messages": [{"role": "user", "content": [{"text": "hi"}]}], "inferenceConfig": {"maxTokens": 10}}
BODIES = {"openai_chat": CHAT, "anthropic_messages": MESSAGES, "bedrock_converse": CONVERSE}
API_OF = {"anthropic": "anthropic_messages", "bedrock": "anthropic_messages", "bedrock_converse": "bedrock_converse"}


def build(provider: str, api: str, body: dict, model: str = "m", *, stream: bool = True, client_api: str | None = None, **target: object):
    upstream = UpstreamTarget(name="u", provider=provider, credential="secret", **target)  # type: ignore[arg-type]
    return PROVIDERS[provider].build(
        upstream, api, body, model=model, stream=stream,
        client_api=client_api or api, client_headers={"anthropic-beta": "a-1, b-2"},
    )


@pytest.mark.parametrize(
    ("provider", "header", "value"),
    [
        ("openai", "authorization", "Bearer secret"),
        ("anthropic", "x-api-key", "secret"),
        ("llamacpp", "authorization", "Bearer secret"),
        ("lmstudio", "authorization", "Bearer secret"),
        ("ollama", "authorization", "Bearer secret"),
        ("openrouter", "authorization", "Bearer secret"),
        ("databricks", "authorization", "Bearer secret"),
        ("azure", "api-key", "secret"),
        ("bedrock", "authorization", "Bearer secret"),
        ("bedrock_converse", "authorization", "Bearer secret"),
    ],
)
def test_credential_header(provider, header, value):
    """Each provider gets its credential in its own header."""
    api = API_OF.get(provider, "openai_chat")
    call = build(provider, api, BODIES[api])
    assert call.headers[header] == value


def test_anthropic_version_header():
    """Anthropic requests carry anthropic-version unless the client sent one."""
    assert build("anthropic", "anthropic_messages", MESSAGES).headers["anthropic-version"] == "2023-06-01"


def test_same_api_keeps_client_path():
    """An untranslated request keeps the client's path and query."""
    assert build("openai", "openai_chat", CHAT).path is None


def test_translated_request_gets_api_path():
    """A request translated to chat goes to /v1/chat/completions."""
    assert build("ollama", "openai_chat", CHAT, client_api="anthropic_messages").path == "/v1/chat/completions"


def test_azure_deployment_path_and_version():
    """Azure puts the deployment and api-version in the path and drops model."""
    call = build("azure", "openai_chat", CHAT, model="gpt4o-prod", api_version="2025-01-01-preview")
    assert call.path == "/openai/deployments/gpt4o-prod/chat/completions?api-version=2025-01-01-preview"
    assert "model" not in call.body


def test_azure_default_api_version():
    """Without api_version the documented default is used."""
    assert build("azure", "openai_chat", CHAT).path.endswith("?api-version=2024-10-21")


def test_databricks_invocations_path():
    """Databricks calls the serving endpoint named by the tier's model."""
    call = build("databricks", "openai_chat", CHAT, model="databricks-claude-sonnet-4")
    assert call.path == "/serving-endpoints/databricks-claude-sonnet-4/invocations"
    assert "model" not in call.body


def test_openrouter_asks_for_cost():
    """OpenRouter requests ask for usage accounting, which adds usage.cost."""
    assert build("openrouter", "openai_chat", CHAT).body["usage"] == {"include": True}


def test_openrouter_static_headers():
    """Configured headers such as HTTP-Referer are sent."""
    call = build("openrouter", "openai_chat", CHAT, headers={"http-referer": "https://example.test", "x-title": "lynkr"})
    assert call.headers["http-referer"] == "https://example.test"
    assert call.headers["x-title"] == "lynkr"


def test_bedrock_invoke_streaming():
    """Bedrock streams through invoke-with-response-stream in event stream framing."""
    call = build("bedrock", "anthropic_messages", MESSAGES, model="anthropic.claude-sonnet-4-5-20250929-v1:0")
    assert call.path == "/model/anthropic.claude-sonnet-4-5-20250929-v1%3A0/invoke-with-response-stream"
    assert call.response_framing == "eventstream"
    assert "model" not in call.body
    assert "stream" not in call.body
    assert call.body["anthropic_version"] == "bedrock-2023-05-31"
    assert call.body["anthropic_beta"] == ["a-1", "b-2"]


def test_bedrock_invoke_buffered():
    """A buffered Bedrock request uses /invoke and a JSON response."""
    call = build("bedrock", "anthropic_messages", dict(MESSAGES, stream=False), stream=False, model="x")
    assert call.path == "/model/x/invoke"
    assert call.response_framing == "sse"


def test_bedrock_sigv4_sends_no_credential():
    """With sigv4 the key is not sent: Envoy signs the request."""
    call = build("bedrock", "anthropic_messages", MESSAGES, auth="sigv4")
    assert "authorization" not in call.headers


def test_ollama_native_apis_accepted():
    """Ollama accepts its native chat and generate APIs without translation."""
    assert PROVIDERS["ollama"].target_api("ollama_chat") == "ollama_chat"
    assert PROVIDERS["ollama"].target_api("anthropic_messages") == "openai_chat"


def test_anthropic_headers_removed_towards_chat_upstream():
    """anthropic-version and anthropic-beta never reach an OpenAI-style upstream."""
    upstream = UpstreamTarget(name="u", provider="llamacpp", credential=None)
    call = PROVIDERS["llamacpp"].build(
        upstream, "openai_chat", CHAT, model="m", stream=True, client_api="anthropic_messages",
        client_headers={"anthropic-version": "2023-06-01", "anthropic-beta": "x", "x-app": "cli"},
    )
    assert set(call.remove_headers) == {"anthropic-version", "anthropic-beta"}


def test_bedrock_moves_betas_out_of_headers():
    """Bedrock takes betas in the body, so the anthropic-beta header is removed."""
    call = build("bedrock", "anthropic_messages", MESSAGES)
    assert "anthropic-beta" in call.remove_headers


@pytest.mark.parametrize("client_api", ["openai_chat", "anthropic_messages", "openai_responses"])
def test_bedrock_converse_takes_converse_only(client_api):
    """Every client API is translated to Converse for a bedrock_converse upstream."""
    assert PROVIDERS["bedrock_converse"].target_api(client_api) == "bedrock_converse"
    assert PROVIDERS["bedrock_converse"].apis == frozenset({"bedrock_converse"})


def test_bedrock_converse_streaming():
    """A streamed Converse request goes to /converse-stream in event stream framing."""
    body = {"model": "m", "stream": True, **CONVERSE}
    call = build("bedrock_converse", "bedrock_converse", body, model="amazon.nova-micro-v1:0", client_api="openai_chat")
    assert call.path == "/model/amazon.nova-micro-v1%3A0/converse-stream"
    assert call.response_framing == "eventstream"
    assert call.body == CONVERSE


def test_bedrock_converse_buffered():
    """A buffered Converse request goes to /converse with a JSON response."""
    call = build(
        "bedrock_converse", "bedrock_converse", CONVERSE, stream=False,
        model="us.anthropic.claude-sonnet-4-5-20250929-v1:0", client_api="openai_chat",
    )
    assert call.path == "/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/converse"
    assert call.response_framing == "sse"
    assert call.body == CONVERSE


def test_bedrock_converse_sigv4_sends_no_credential():
    """With sigv4 no key is sent to Converse: Envoy signs the request."""
    call = build("bedrock_converse", "bedrock_converse", CONVERSE, auth="sigv4", client_api="openai_chat")
    assert "authorization" not in call.headers


def test_bedrock_converse_removes_client_api_headers():
    """OpenAI and Anthropic client headers never reach Converse."""
    upstream = UpstreamTarget(name="u", provider="bedrock_converse", credential=None)
    call = PROVIDERS["bedrock_converse"].build(
        upstream, "bedrock_converse", CONVERSE, model="m", stream=False, client_api="anthropic_messages",
        client_headers={"anthropic-version": "2023-06-01", "anthropic-beta": "x", "openai-organization": "o", "x-app": "cli"},
    )
    assert set(call.remove_headers) == {"anthropic-version", "anthropic-beta", "openai-organization"}
