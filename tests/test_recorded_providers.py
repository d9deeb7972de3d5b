"""Recorded Ollama, Bedrock, OpenRouter, Azure and llama.cpp responses: usage and cost.

Each fixture under tests/fixtures/recorded/ names its public source in
NAME.json. The parser tests read every body with its API format, buffered
or streamed (whole and one byte at a time). The end-to-end tests replay the
bodies through a real Envoy and check what the client gets and what is
charged.

Prices are USD per million tokens and are test fixtures, not vendor list
prices. One token at 1 USD per million costs 1000 nano-dollars, so each
expected cost below is the sum of tokens x price, times 1000.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from lynkr_extproc.formats import (
    anthropic_messages,
    bedrock_converse,
    ollama,
    openai_chat,
)
from lynkr_extproc.framing import encode_event_stream, framer_for
from lynkr_extproc.pricing import Usage, load_price_table
from lynkr_extproc.sse import SSEDecoder
from tests.support import cases
from tests.support.stack import Stack
from tests.support.upstream import FIXTURES, ReplayUpstream, Reply

SONNET = {"input": 3.00, "cache_read": 0.30, "cache_write": 3.75, "output": 15.00}

PRICES: dict[str, dict[str, float]] = {
    "gemma3:1b": {"input": 0.10, "output": 0.40},
    "llama3.2": {"input": 0.10, "output": 0.40},
    "llama3": {"input": 0.10, "output": 0.40},
    "amazon.nova-micro-v1:0": {"input": 0.035, "output": 0.14},
    "anthropic.claude-3-haiku-20240307-v1:0": {"input": 0.25, "output": 1.25},
    "anthropic.claude-sonnet-4-5-20250929-v1:0": SONNET,
    "us.anthropic.claude-sonnet-4-5-20250929-v1:0": SONNET,
    "anthropic/claude-sonnet-4.6": {"input": 3.00, "output": 15.00},
    "gpt-35-turbo": {"input": 0.50, "output": 1.50},
    "ai/smollm2:360M-Q4_K_M": {"input": 0.10, "output": 0.20},
}

PRICE_TABLE = load_price_table(PRICES, include_defaults=False)

JSON_CASES = [
    # 26 x 0.10 + 298 x 0.40 = 121.8
    pytest.param("ollama/chat", ollama.chat, "llama3.2", 121_800, id="ollama-chat"),
    # 15 x 0.10 + 65 x 0.40 = 27.5
    pytest.param(
        "ollama/generate", ollama.generate, "gemma3:1b", 27_500, id="ollama-generate"
    ),
    # 22 x 0.10 + 73 x 0.40 = 31.4
    pytest.param(
        "ollama/openai_chat_completion",
        openai_chat,
        "llama3",
        31_400,
        id="ollama-openai",
    ),
    # 2 x 3.00 + 1322 cache writes x 3.75 + 5 x 15.00 = 6 + 4957.5 + 75 = 5038.5
    pytest.param(
        "bedrock/converse_cache_write",
        bedrock_converse,
        "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
        5_038_500,
        id="converse-cache-write",
    ),
    # 2 x 3.00 + 1322 cache reads x 0.30 + 5 x 15.00 = 6 + 396.6 + 75 = 477.6
    pytest.param(
        "bedrock/converse_cache_read",
        bedrock_converse,
        "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
        477_600,
        id="converse-cache-read",
    ),
    # 38 x 0.25 + 246 x 1.25 = 9.5 + 307.5 = 317
    pytest.param(
        "bedrock/invoke_model",
        anthropic_messages,
        "anthropic.claude-3-haiku-20240307-v1:0",
        317_000,
        id="bedrock-invoke",
    ),
    # 566 x 3.00 + 27 x 15.00 = 2103, so 0.002103 USD, equal to OpenRouter's usage.cost
    pytest.param(
        "openrouter/chat_completion",
        openai_chat,
        "anthropic/claude-sonnet-4.6",
        2_103_000,
        id="openrouter",
    ),
    # 11 x 0.50 + 40 x 1.50 = 5.5 + 60 = 65.5
    pytest.param(
        "azure/chat_completion", openai_chat, "gpt-35-turbo", 65_500, id="azure"
    ),
    # 21 x 0.10 + 34 x 0.20 = 2.1 + 6.8 = 8.9
    pytest.param(
        "llamacpp/chat_completion",
        openai_chat,
        "ai/smollm2:360M-Q4_K_M",
        8_900,
        id="llamacpp",
    ),
]

STREAM_CASES = [
    # 16 x 0.10 + 22 x 0.40 = 10.4
    pytest.param(
        "ollama/chat_stream", ollama.chat, "gemma3:1b", 10_400, id="ollama-chat"
    ),
    # 16 x 0.10 + 22 x 0.40 = 10.4
    pytest.param(
        "ollama/generate_stream",
        ollama.generate,
        "gemma3:1b",
        10_400,
        id="ollama-generate",
    ),
    # 13 x 0.035 + 82 x 0.14 = 0.455 + 11.48 = 11.935
    pytest.param(
        "bedrock/converse_stream",
        bedrock_converse,
        "amazon.nova-micro-v1:0",
        11_935,
        id="converse",
    ),
    # 10 x 3.00 + 15 x 15.00 = 30 + 225 = 255
    pytest.param(
        "bedrock/invoke_model_stream",
        anthropic_messages,
        "anthropic.claude-sonnet-4-5-20250929-v1:0",
        255_000,
        id="bedrock-invoke",
    ),
    # 254 x 3.00 + 5 x 15.00 = 837, so 0.000837 USD, equal to OpenRouter's usage.cost
    pytest.param(
        "openrouter/chat_completion_stream",
        openai_chat,
        "anthropic/claude-sonnet-4.6",
        837_000,
        id="openrouter",
    ),
]


def fixture_meta(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def fixture_body(name: str) -> bytes:
    return (FIXTURES / f"{name}.body").read_bytes()


def fixture_usage(name: str) -> Usage:
    return Usage(**fixture_meta(name)["usage"])


def meter_stream(name: str, api: Any, chunk_size: int | None = None) -> Any:
    """Feed a streamed fixture to `api`'s meter through the framer of its content type."""
    body = fixture_body(name)
    framer = framer_for(fixture_meta(name)["headers"]["content-type"], keep_raw=False)
    assert framer is not None
    meter = api.new_meter()
    size = chunk_size or len(body)
    for start in range(0, len(body), size):
        for event, _ in framer.feed_blocks(body[start : start + size]):
            if event is not None:
                meter.feed(event)
    pending = framer.pending_event()
    if pending is not None:
        meter.feed(pending)
    return meter


# -- parsers -------------------------------------------------------------------


@pytest.mark.parametrize(("name", "api", "model", "cost_nanos"), JSON_CASES)
def test_buffered_usage_and_cost(name, api, model, cost_nanos):
    """The format's parser reads the fixture's usage from the whole body, at the stated cost."""
    flags: set[str] = set()
    usage = api.usage_from_json(json.loads(fixture_body(name)), flags)
    assert usage == fixture_usage(name)
    assert flags == set()
    assert PRICE_TABLE.lookup(model).cost_nanos(usage) == cost_nanos


@pytest.mark.parametrize(("name", "api", "model", "cost_nanos"), STREAM_CASES)
def test_stream_usage_whole_body(name, api, model, cost_nanos):
    """The stream, fed in one chunk, ends finished with the fixture's usage and cost."""
    meter = meter_stream(name, api)
    assert meter.usage == fixture_usage(name)
    assert meter.finished
    assert not meter.failed
    assert meter.flags == set()
    assert PRICE_TABLE.lookup(model).cost_nanos(meter.usage) == cost_nanos


@pytest.mark.parametrize(("name", "api", "model", "cost_nanos"), STREAM_CASES)
def test_stream_usage_byte_by_byte(name, api, model, cost_nanos):
    """The stream, fed one byte at a time, gives the same usage and cost."""
    meter = meter_stream(name, api, chunk_size=1)
    assert meter.usage == fixture_usage(name)
    assert meter.finished
    assert not meter.failed
    assert PRICE_TABLE.lookup(model).cost_nanos(meter.usage) == cost_nanos


@pytest.mark.parametrize(
    "name", ["bedrock/converse_stream", "bedrock/invoke_model_stream"]
)
def test_event_stream_body_is_recorded_events(name):
    """Each Bedrock stream body is its recorded events, framed by encode_event_stream."""
    events = fixture_meta(name)["events"]
    framed = b"".join(
        encode_event_stream(kind, json.dumps(payload, separators=(",", ":")).encode())
        for kind, payload in events
    )
    assert framed == fixture_body(name)


def test_converse_stream_unfinished_until_metadata():
    """ConverseStream is unfinished at messageStop, because usage comes in the later metadata event."""
    events = fixture_meta("bedrock/converse_stream")["events"]
    framed = b"".join(
        encode_event_stream(kind, json.dumps(payload, separators=(",", ":")).encode())
        for kind, payload in events[:-1]
    )
    framer = framer_for("application/vnd.amazon.eventstream", keep_raw=False)
    meter = bedrock_converse.new_meter()
    for event, _ in framer.feed_blocks(framed):
        if event is not None:
            meter.feed(event)
    assert events[-2][0] == "messageStop"
    assert not meter.finished
    assert meter.usage is None


def test_openrouter_cost_from_buffered_body():
    """OpenRouter's usage.cost of 0.002103 USD is read as 2_103_000 nano-dollars."""
    document = json.loads(fixture_body("openrouter/chat_completion"))
    assert openai_chat.provider_cost_from_json(document) == 2_103_000


def test_openrouter_cost_from_stream():
    """OpenRouter's streamed usage.cost of 0.000837 USD is read as 837_000 nano-dollars."""
    meter = meter_stream("openrouter/chat_completion_stream", openai_chat, chunk_size=1)
    assert meter.provider_cost == 837_000


def test_openrouter_cache_writes_priced_as_writes():
    """OpenRouter's prompt_tokens_details.cache_write_tokens are charged as cache writes.

    The usage object is the Response Format example of
    https://openrouter.ai/docs/use-cases/usage-accounting. The expected split
    assumes cache_write_tokens is a part of prompt_tokens, as cached_tokens
    is; the docs example (194 prompt tokens, 100 written) fits that reading.
    """
    document = {
        "object": "chat.completion.chunk",
        "usage": {
            "completion_tokens": 2,
            "completion_tokens_details": {"reasoning_tokens": 0},
            "cost": 0.95,
            "cost_details": {"upstream_inference_cost": 19},
            "prompt_tokens": 194,
            "prompt_tokens_details": {
                "cached_tokens": 0,
                "cache_write_tokens": 100,
                "audio_tokens": 0,
            },
            "total_tokens": 196,
        },
    }
    usage = openai_chat.usage_from_json(document, set())
    assert usage == Usage(input_tokens=94, output_tokens=2, cache_write_tokens=100)


# -- end to end through Envoy --------------------------------------------------

UPSTREAMS = ("ollama", "bedrock", "openrouter", "azure", "llamacpp", "bedrock_converse")

ALIASES = {
    "to-gemma": ("ollama", "gemma3:1b"),
    "to-llama3": ("ollama", "llama3"),
    "to-haiku": ("bedrock", "anthropic.claude-3-haiku-20240307-v1:0"),
    "to-sonnet": ("bedrock", "anthropic.claude-sonnet-4-5-20250929-v1:0"),
    "to-openrouter": ("openrouter", "anthropic/claude-sonnet-4.6"),
    "to-azure": ("azure", "gpt-35-turbo"),
    "to-smollm": ("llamacpp", "ai/smollm2:360M-Q4_K_M"),
    "to-nova": ("bedrock_converse", "amazon.nova-micro-v1:0"),
    "to-sonnet-converse": (
        "bedrock_converse",
        "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
    ),
}


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
        name: {
            "provider": name,
            "url": server.url,
            "api_key": f"provider-secret-{name}",
        }
        for name, server in upstreams.items()
    }
    document["upstreams"]["azure"]["api_version"] = "2023-06-01-preview"
    document["tiers"] = {
        "SIMPLE": {"upstream": "llamacpp", "model": "ai/smollm2:360M-Q4_K_M"}
    }
    document["routing"] = {
        "bands": {"SIMPLE": 100},
        "aliases": {
            alias: {"upstream": upstream, "model": model}
            for alias, (upstream, model) in ALIASES.items()
        },
    }
    document["pricing"]["models"] = PRICES
    document["budgets"] = {"team": {"t1": [{"period": "month", "limit_usd": 100}]}}
    return document


def auth() -> dict[str, str]:
    return {"x-api-key": cases.secret("vk-a")}


def client_request(name: str, model: str) -> dict:
    """Return the fixture's recorded request with the client's model alias as its model."""
    return {**fixture_meta(name)["request"], "model": model}


def replay(upstreams, upstream: str, name: str) -> None:
    upstreams[upstream].choose = Reply.fixture(name)


def post_once(document, path: str, body: dict) -> tuple[Any, list[dict]]:
    with Stack(document) as stack:
        response = stack.post(path, body, auth())
        records = stack.records()
    return response, records


@pytest.mark.e2e
def test_ollama_native_chat_stream(document, upstreams):
    """An /api/chat NDJSON stream reaches the client unchanged and is charged from its done line."""
    replay(upstreams, "ollama", "ollama/chat_stream")
    response, records = post_once(
        document, "/api/chat", client_request("ollama/chat_stream", "to-gemma")
    )
    received = upstreams["ollama"].received[0]
    assert response.status == 200
    assert response.body == fixture_body("ollama/chat_stream")
    assert received.path == "/api/chat"
    assert received.json()["model"] == "gemma3:1b"
    assert records[0]["input_tokens"] == 16
    assert records[0]["output_tokens"] == 22
    assert records[0]["cost_nanos"] == 10_400


@pytest.mark.e2e
def test_ollama_native_generate_json(document, upstreams):
    """A buffered /api/generate body reaches the client unchanged and is charged from its counts."""
    replay(upstreams, "ollama", "ollama/generate")
    response, records = post_once(
        document, "/api/generate", client_request("ollama/generate", "to-gemma")
    )
    assert response.status == 200
    assert response.body == fixture_body("ollama/generate")
    assert upstreams["ollama"].received[0].path == "/api/generate"
    assert records[0]["cost_nanos"] == 27_500


@pytest.mark.e2e
def test_ollama_openai_compatible_json(document, upstreams):
    """Ollama's /v1/chat/completions body reaches the client unchanged and is charged."""
    name = "ollama/openai_chat_completion"
    replay(upstreams, "ollama", name)
    response, records = post_once(
        document, "/v1/chat/completions", client_request(name, "to-llama3")
    )
    assert response.status == 200
    assert response.body == fixture_body(name)
    assert upstreams["ollama"].received[0].path == "/v1/chat/completions"
    assert records[0]["cost_nanos"] == 31_400


@pytest.mark.e2e
def test_bedrock_invoke_model_json(document, upstreams):
    """An Anthropic request becomes the recorded InvokeModel request, and its reply is charged."""
    name = "bedrock/invoke_model"
    replay(upstreams, "bedrock", name)
    body = {
        key: value
        for key, value in fixture_meta(name)["request"].items()
        if key != "anthropic_version"
    }
    response, records = post_once(
        document, "/v1/messages", {**body, "model": "to-haiku"}
    )
    received = upstreams["bedrock"].received[0]
    assert response.status == 200
    assert response.body == fixture_body(name)
    assert received.path == fixture_meta(name)["request_path"]
    assert received.json() == fixture_meta(name)["request"]
    assert records[0]["cost_nanos"] == 317_000


@pytest.mark.e2e
def test_bedrock_invoke_stream_reframed(document, upstreams):
    """The recorded event stream reaches the client as SSE of the Anthropic events it wraps."""
    name = "bedrock/invoke_model_stream"
    replay(upstreams, "bedrock", name)
    body = {
        "model": "to-sonnet",
        "max_tokens": 64,
        "stream": True,
        "messages": [{"role": "user", "content": "Hi"}],
    }
    response, records = post_once(document, "/v1/messages", body)
    wrapped = [
        base64.b64decode(payload["bytes"]).decode()
        for _, payload in fixture_meta(name)["events"]
    ]
    events = SSEDecoder().feed(response.body)
    assert response.status == 200
    assert response.headers["content-type"] == "text/event-stream"
    assert [event.data for event in events] == wrapped
    assert [event.event for event in events] == [
        json.loads(data)["type"] for data in wrapped
    ]
    assert upstreams["bedrock"].received[0].path == fixture_meta(name)["request_path"]
    assert records[0]["cost_nanos"] == 255_000


@pytest.mark.e2e
def test_openrouter_json_cost_beside_ours(document, upstreams):
    """OpenRouter's body passes through, and its own cost is stored beside the computed one."""
    name = "openrouter/chat_completion"
    replay(upstreams, "openrouter", name)
    response, records = post_once(
        document, "/v1/chat/completions", client_request(name, "to-openrouter")
    )
    assert response.status == 200
    assert response.body == fixture_body(name)
    assert upstreams["openrouter"].received[0].json()["usage"] == {"include": True}
    assert records[0]["provider_cost_nanos"] == 2_103_000
    assert records[0]["cost_nanos"] == 2_103_000


@pytest.mark.e2e
def test_openrouter_stream_with_usage(document, upstreams):
    """A stream whose client requested usage passes through byte for byte, comments included."""
    name = "openrouter/chat_completion_stream"
    replay(upstreams, "openrouter", name)
    response, records = post_once(
        document, "/v1/chat/completions", client_request(name, "to-openrouter")
    )
    assert response.status == 200
    assert response.body == fixture_body(name)
    assert records[0]["input_tokens"] == 254
    assert records[0]["output_tokens"] == 5
    assert records[0]["provider_cost_nanos"] == 837_000
    assert records[0]["cost_nanos"] == 837_000


@pytest.mark.e2e
def test_azure_content_filter_annotations(document, upstreams):
    """Azure's annotated body passes through to the deployment path and is charged from usage."""
    name = "azure/chat_completion"
    replay(upstreams, "azure", name)
    response, records = post_once(
        document, "/v1/chat/completions", client_request(name, "to-azure")
    )
    received = upstreams["azure"].received[0]
    assert response.status == 200
    assert response.body == fixture_body(name)
    assert received.path == fixture_meta(name)["request_path"]
    assert "model" not in received.json()
    assert records[0]["cost_nanos"] == 65_500


@pytest.mark.e2e
def test_llamacpp_timings_ignored(document, upstreams):
    """A llama.cpp body with timings passes through and is charged from usage alone."""
    name = "llamacpp/chat_completion"
    replay(upstreams, "llamacpp", name)
    response, records = post_once(
        document, "/v1/chat/completions", client_request(name, "to-smollm")
    )
    assert response.status == 200
    assert response.body == fixture_body(name)
    assert upstreams["llamacpp"].received[0].path == "/v1/chat/completions"
    assert records[0]["input_tokens"] == 21
    assert records[0]["output_tokens"] == 34
    assert records[0]["cost_nanos"] == 8_900


# -- translated clients on a Converse tier -------------------------------------


def converse_text(name: str) -> str:
    """Join the text deltas of a recorded ConverseStream."""
    return "".join(
        payload["delta"]["text"]
        for kind, payload in fixture_meta(name)["events"]
        if kind == "contentBlockDelta"
    )


@pytest.mark.e2e
def test_chat_client_on_converse_json(document, upstreams):
    """A chat request reaches /converse as a Converse body, and the reply is a chat.completion."""
    name = "bedrock/converse_cache_read"
    replay(upstreams, "bedrock_converse", name)
    body = {
        "model": "to-sonnet-converse",
        "max_tokens": 16,
        "messages": [
            {"role": "system", "content": "Answer with a number."},
            {"role": "user", "content": "What is 10 + 11?"},
        ],
    }

    response, records = post_once(document, "/v1/chat/completions", body)
    received = upstreams["bedrock_converse"].received[0]
    completion = response.json()

    assert response.status == 200
    assert response.headers["content-type"] == "application/json"
    assert received.path == fixture_meta(name)["request_path"]
    assert received.headers["authorization"] == "Bearer provider-secret-bedrock_converse"
    assert received.json() == {
        "system": [{"text": "Answer with a number."}],
        "messages": [{"role": "user", "content": [{"text": "What is 10 + 11?"}]}],
        "inferenceConfig": {"maxTokens": 16},
    }
    assert completion["object"] == "chat.completion"
    assert completion["model"] == "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
    assert completion["choices"][0]["message"]["content"] == "21"
    assert completion["choices"][0]["finish_reason"] == "stop"
    assert completion["usage"]["prompt_tokens"] == 1324
    assert completion["usage"]["prompt_tokens_details"] == {"cached_tokens": 1322}
    assert records[0]["provider"] == "bedrock_converse"
    assert records[0]["cache_read_tokens"] == 1322
    # 2 x 3.00 + 1322 cache reads x 0.30 + 5 x 15.00 = 477.6
    assert records[0]["cost_nanos"] == 477_600


@pytest.mark.e2e
def test_chat_client_on_converse_stream(document, upstreams):
    """A streamed chat request gets the recorded ConverseStream as chat chunks, priced."""
    name = "bedrock/converse_stream"
    replay(upstreams, "bedrock_converse", name)
    body = {
        "model": "to-nova",
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0.0,
        "messages": [
            {"role": "system", "content": "You are a helpful chatbot."},
            {"role": "user", "content": "What is the capital of France?"},
        ],
    }

    response, records = post_once(document, "/v1/chat/completions", body)
    received = upstreams["bedrock_converse"].received[0]
    events = SSEDecoder().feed(response.body)
    chunks = [json.loads(event.data) for event in events[:-1]]
    text = "".join(
        chunk["choices"][0]["delta"].get("content") or ""
        for chunk in chunks
        if chunk["choices"]
    )

    assert response.status == 200
    assert response.headers["content-type"] == "text/event-stream"
    assert received.path == fixture_meta(name)["request_path"]
    assert received.json() == fixture_meta(name)["request"]
    assert events[-1].data == "[DONE]"
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert text == converse_text(name)
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["usage"]["prompt_tokens"] == 13
    assert chunks[-1]["usage"]["completion_tokens"] == 82
    assert records[0]["input_tokens"] == 13
    assert records[0]["output_tokens"] == 82
    # 13 x 0.035 + 82 x 0.14 = 0.455 + 11.48 = 11.935
    assert records[0]["cost_nanos"] == 11_935


@pytest.mark.e2e
def test_claude_code_on_converse_stream(document, upstreams):
    """A Claude Code style stream on a Converse tier gets Anthropic events, priced."""
    name = "bedrock/converse_stream"
    replay(upstreams, "bedrock_converse", name)
    body = {
        "model": "to-nova",
        "max_tokens": 512,
        "stream": True,
        "system": [
            {
                "type": "text",
                "text": "You are a helpful chatbot.",
                "cache_control": {"type": "ephemeral"},
            }
        ],
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "metadata": {"user_id": "user_1"},
        "tools": [
            {
                "name": "Bash",
                "description": "Run a command",
                "input_schema": {
                    "type": "object",
                    "properties": {"command": {"type": "string"}},
                },
            }
        ],
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
    }

    with Stack(document) as stack:
        response = stack.post(
            "/v1/messages?beta=true",
            body,
            {**auth(), "anthropic-beta": "interleaved-thinking-2025-05-14"},
        )
        records = stack.records()

    received = upstreams["bedrock_converse"].received[0]
    sent = received.json()
    events = SSEDecoder().feed(response.body)
    payloads = [json.loads(event.data) for event in events]
    text = "".join(
        payload["delta"]["text"]
        for payload in payloads
        if payload["type"] == "content_block_delta"
    )

    assert response.status == 200
    assert response.headers["content-type"] == "text/event-stream"
    assert received.path == fixture_meta(name)["request_path"]
    assert "anthropic-beta" not in received.headers
    assert sent["system"] == [{"text": "You are a helpful chatbot."}]
    assert sent["messages"] == [
        {"role": "user", "content": [{"text": "What is the capital of France?"}]}
    ]
    assert sent["inferenceConfig"] == {"maxTokens": 512}
    assert sent["toolConfig"]["tools"][0]["toolSpec"]["name"] == "Bash"
    assert set(sent) == {"system", "messages", "inferenceConfig", "toolConfig"}
    assert [event.event for event in events][0] == "message_start"
    assert [event.event for event in events][-1] == "message_stop"
    assert text == converse_text(name)
    assert payloads[-2]["delta"]["stop_reason"] == "end_turn"
    assert payloads[-2]["usage"]["input_tokens"] == 13
    assert payloads[-2]["usage"]["output_tokens"] == 82
    assert records[0]["cost_nanos"] == 11_935


@pytest.mark.e2e
def test_converse_error_reaches_chat_client(document, upstreams):
    """A Bedrock 429 body reaches a chat client as an OpenAI error with the same status."""
    upstreams["bedrock_converse"].choose = Reply.json(
        {"message": "Too many requests, please wait before trying again."}, status=429
    )
    body = {"model": "to-nova", "messages": [{"role": "user", "content": "Hi"}]}

    response, _ = post_once(document, "/v1/chat/completions", body)

    assert response.status == 429
    assert response.json() == {
        "error": {
            "message": "Too many requests, please wait before trying again.",
            "type": "rate_limit_exceeded",
            "param": None,
            "code": None,
        }
    }
