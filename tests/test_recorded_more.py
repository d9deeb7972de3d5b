"""Recorded llama.cpp, Azure, LM Studio and Databricks responses: usage and cost.

These add to tests/test_recorded_providers.py and reuse its helpers. Each
fixture under tests/fixtures/recorded/ names its source in NAME.json. The
meter tests read each body with the OpenAI Chat Completions format. The
end-to-end tests replay it through a real Envoy and check the upstream
path, the client's bytes and the spend record.

Prices are USD per million tokens and are test fixtures, not vendor list
prices. One token at 1 USD per million costs 1000 nano-dollars.
"""

from __future__ import annotations

import json
import math
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from lynkr_extproc.formats import openai_chat
from lynkr_extproc.pricing import Usage, load_price_table
from lynkr_extproc.routing.score import estimate_tokens
from lynkr_extproc.sse import SSEDecoder
from tests.support import cases
from tests.support.stack import Stack
from tests.support.upstream import ReplayUpstream, Reply
from tests.test_recorded_providers import (
    auth,
    client_request,
    fixture_body,
    fixture_meta,
    fixture_usage,
    meter_stream,
    post_once,
    replay,
)

LLAMACPP_STREAM = "llamacpp/chat_completion_stream"
AZURE_STREAM = "azure/chat_completion_stream"
LMSTUDIO_JSON = "lmstudio/chat_completion"
DATABRICKS_STREAM = "databricks/chat_completion_stream"

DATABRICKS_ENDPOINT = "databricks-claude-sonnet-4"

PRICES: dict[str, dict[str, float]] = {
    "gemma-3-270m": {"input": 0.10, "output": 0.40},
    "chat": {"input": 0.40, "output": 1.60},
    "deepseek-r1-distill-qwen-7b": {"input": 0.10, "output": 0.20, "reasoning": 0.40},
    DATABRICKS_ENDPOINT: {"input": 3.00, "output": 15.00},
}

PRICE_TABLE = load_price_table(PRICES, include_defaults=False)

JSON_CASES = [
    # 138 x 0.10 + (201 - 97) x 0.20 + 97 reasoning x 0.40 = 13.8 + 20.8 + 38.8 = 73.4
    pytest.param(LMSTUDIO_JSON, "deepseek-r1-distill-qwen-7b", 73_400, id="lmstudio"),
]

STREAM_CASES = [
    # 22 x 0.40 + 34 x 1.60 = 8.8 + 54.4 = 63.2
    pytest.param(AZURE_STREAM, "chat", 63_200, id="azure"),
    # 4982 x 3.00 + 122 x 15.00 = 14946 + 1830 = 16776
    pytest.param(DATABRICKS_STREAM, DATABRICKS_ENDPOINT, 16_776_000, id="databricks"),
]

# The llama.cpp stream has no usage, so lynkr-extproc estimates it at 4
# characters a token: "Say hello." is 10 characters, so (10 + 3) // 4 = 3
# input tokens, and the 71 characters streamed are ceil(71 / 4) = 18
# output tokens. 3 x 0.10 + 18 x 0.40 = 0.3 + 7.2 = 7.5
LLAMACPP_ESTIMATE = Usage(input_tokens=3, output_tokens=18)
LLAMACPP_COST_NANOS = 7_500

# The first five Databricks events carry all 113 characters of text and a
# running usage of 4982 prompt tokens. Cut there, output is estimated at
# ceil(113 / 4) = 29 tokens: 4982 x 3.00 + 29 x 15.00 = 14946 + 435 = 15381
DATABRICKS_CUT_EVENTS = 5
DATABRICKS_CUT_COST_NANOS = 15_381_000


def fixture_events(name: str) -> list[Any]:
    """Return the SSE events of a streamed fixture, in order."""
    return SSEDecoder().feed(fixture_body(name))


def meter_events(events: list[Any]) -> Any:
    """Feed events to a new Chat Completions meter and return the meter."""
    meter = openai_chat.new_meter()
    for event in events:
        meter.feed(event)
    return meter


# -- parsers -------------------------------------------------------------------


@pytest.mark.parametrize(("name", "model", "cost_nanos"), JSON_CASES)
def test_buffered_usage_and_cost(name, model, cost_nanos):
    """The chat parser reads the fixture's usage and cost from the whole body."""
    flags: set[str] = set()
    usage = openai_chat.usage_from_json(json.loads(fixture_body(name)), flags)
    assert usage == fixture_usage(name)
    assert flags == set()
    assert PRICE_TABLE.lookup(model).cost_nanos(usage) == cost_nanos


@pytest.mark.parametrize(("name", "model", "cost_nanos"), STREAM_CASES)
def test_stream_usage_whole_body(name, model, cost_nanos):
    """The stream, fed in one chunk, ends finished with the fixture's usage and cost."""
    meter = meter_stream(name, openai_chat)
    assert meter.usage == fixture_usage(name)
    assert meter.finished
    assert not meter.failed
    assert meter.flags == set()
    assert PRICE_TABLE.lookup(model).cost_nanos(meter.usage) == cost_nanos


@pytest.mark.parametrize(("name", "model", "cost_nanos"), STREAM_CASES)
def test_stream_usage_byte_by_byte(name, model, cost_nanos):
    """The stream, fed one byte at a time, gives the same usage and cost."""
    meter = meter_stream(name, openai_chat, chunk_size=1)
    assert meter.usage == fixture_usage(name)
    assert meter.finished
    assert not meter.failed
    assert PRICE_TABLE.lookup(model).cost_nanos(meter.usage) == cost_nanos


@pytest.mark.parametrize("chunk_size", [None, 1], ids=["whole", "bytewise"])
def test_llamacpp_stream_has_no_usage(chunk_size):
    """The llama.cpp stream finishes with no usage and 71 characters of text."""
    meter = meter_stream(LLAMACPP_STREAM, openai_chat, chunk_size=chunk_size)
    assert fixture_meta(LLAMACPP_STREAM)["usage"] is None
    assert meter.usage is None
    assert meter.finished
    assert not meter.failed
    assert meter.text_chars == 71


def test_llamacpp_estimate_and_cost():
    """The 4-characters-a-token estimate gives 3 input and 18 output tokens."""
    facts = openai_chat.read_request(fixture_meta(LLAMACPP_STREAM)["request"])
    meter = meter_stream(LLAMACPP_STREAM, openai_chat)
    estimate = Usage(
        input_tokens=estimate_tokens(facts.text),
        output_tokens=math.ceil(meter.text_chars / 4),
    )
    assert facts.text == "Say hello."
    assert estimate == LLAMACPP_ESTIMATE
    price = PRICE_TABLE.lookup("gemma-3-270m")
    assert price.cost_nanos(estimate) == LLAMACPP_COST_NANOS


def test_azure_filter_chunk_changes_nothing():
    """Azure's prompt_filter_results chunk with empty choices adds nothing."""
    first, *_ = fixture_events(AZURE_STREAM)
    meter = meter_events([first])
    assert json.loads(first.data)["choices"] == []
    assert "prompt_filter_results" in json.loads(first.data)
    assert meter.usage is None
    assert meter.text_chars == 0
    assert not meter.finished
    assert not meter.is_usage_only(first)


def test_azure_usage_chunk_is_usage_only():
    """Only Azure's usage chunk, before [DONE], counts as a usage-only event."""
    events = fixture_events(AZURE_STREAM)
    meter = openai_chat.new_meter()
    usage_only = [
        index for index, event in enumerate(events) if meter.is_usage_only(event)
    ]
    assert usage_only == [len(events) - 2]
    assert events[-1].data == "[DONE]"


def test_databricks_running_usage_not_final():
    """Databricks usage on every chunk is kept but ends nothing before finish_reason."""
    events = fixture_events(DATABRICKS_STREAM)
    meter = meter_events(events[:-2])
    assert len(events) == 19
    assert meter.usage == Usage(input_tokens=4982)
    assert not meter.finished


def test_databricks_finish_chunk_is_final():
    """The chunk with finish_reason and full usage ends the stream before [DONE]."""
    events = fixture_events(DATABRICKS_STREAM)
    meter = meter_events(events[:-1])
    assert meter.usage == fixture_usage(DATABRICKS_STREAM)
    assert meter.finished


def test_databricks_cut_text_estimate():
    """Cut after five events, the meter has 113 characters and no final usage."""
    meter = meter_events(fixture_events(DATABRICKS_STREAM)[:DATABRICKS_CUT_EVENTS])
    assert meter.text_chars == 113
    assert not meter.finished
    assert math.ceil(meter.text_chars / 4) == 29


# -- end to end through Envoy --------------------------------------------------

UPSTREAMS = ("llamacpp", "azure", "lmstudio", "databricks")

ALIASES = {
    "to-gemma-270m": ("llamacpp", "gemma-3-270m"),
    "to-azure-chat": ("azure", "chat"),
    "to-deepseek": ("lmstudio", "deepseek-r1-distill-qwen-7b"),
    "to-databricks": ("databricks", DATABRICKS_ENDPOINT),
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
    # LM Studio needs no key, so none is configured for it.
    del document["upstreams"]["lmstudio"]["api_key"]
    document["upstreams"]["azure"]["api_version"] = "2024-10-21"
    document["tiers"] = {"SIMPLE": {"upstream": "llamacpp", "model": "gemma-3-270m"}}
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


def hang_up_after(stack: Stack, body: dict, marker: bytes) -> None:
    """POST a streamed chat request and close the connection once `marker` arrives."""
    raw = json.dumps(body).encode()
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nhost: gateway\r\n"
        "content-type: application/json\r\n"
        f"x-api-key: {cases.secret('vk-a')}\r\ncontent-length: {len(raw)}\r\n\r\n"
    )
    client = socket.create_connection(("127.0.0.1", stack.port), timeout=10)
    try:
        client.sendall(head.encode() + raw)
        received = b""
        while marker not in received:
            piece = client.recv(65536)
            assert piece, "connection closed before the marker arrived"
            received += piece
    finally:
        client.close()


def wait_for_records(stack: Stack, timeout_s: float = 10) -> list[dict]:
    """Poll the spend log until it has a row or the timeout passes."""
    deadline = time.monotonic() + timeout_s
    records = stack.records()
    while not records and time.monotonic() < deadline:
        time.sleep(0.05)
        records = stack.records()
    return records


@pytest.mark.e2e
def test_llamacpp_stream_estimated(document, upstreams):
    """The recorded llama.cpp stream passes unchanged and is charged by estimate."""
    replay(upstreams, "llamacpp", LLAMACPP_STREAM)
    response, records = post_once(
        document,
        "/v1/chat/completions",
        client_request(LLAMACPP_STREAM, "to-gemma-270m"),
    )
    received = upstreams["llamacpp"].received[0]
    record = records[0]
    assert response.status == 200
    assert response.body == fixture_body(LLAMACPP_STREAM)
    assert received.path == fixture_meta(LLAMACPP_STREAM)["request_path"]
    assert received.json() == fixture_meta(LLAMACPP_STREAM)["request"]
    assert len(records) == 1
    assert record["usage_source"] == "estimated"
    assert record["outcome"] == "completed"
    assert "usage_missing" in json.loads(record["flags"])
    assert record["input_tokens"] == LLAMACPP_ESTIMATE.input_tokens
    assert record["output_tokens"] == LLAMACPP_ESTIMATE.output_tokens
    assert record["cost_nanos"] == LLAMACPP_COST_NANOS


@pytest.mark.e2e
def test_azure_stream_with_filter_chunks(document, upstreams):
    """Azure's filtered stream reaches the client whole and is charged from usage."""
    replay(upstreams, "azure", AZURE_STREAM)
    response, records = post_once(
        document,
        "/v1/chat/completions",
        client_request(AZURE_STREAM, "to-azure-chat"),
    )
    received = upstreams["azure"].received[0]
    record = records[0]
    assert response.status == 200
    assert response.body == fixture_body(AZURE_STREAM)
    assert received.path == fixture_meta(AZURE_STREAM)["request_path"]
    assert received.headers["api-key"] == "provider-secret-azure"
    assert received.json() == fixture_meta(AZURE_STREAM)["request"]
    assert record["usage_source"] == "reported"
    assert record["outcome"] == "completed"
    assert record["input_tokens"] == 22
    assert record["output_tokens"] == 34
    assert record["cost_nanos"] == 63_200


@pytest.mark.e2e
def test_lmstudio_json_with_stats(document, upstreams):
    """LM Studio's body with stats and reasoning passes unchanged and is charged."""
    replay(upstreams, "lmstudio", LMSTUDIO_JSON)
    response, records = post_once(
        document,
        "/v1/chat/completions",
        client_request(LMSTUDIO_JSON, "to-deepseek"),
    )
    received = upstreams["lmstudio"].received[0]
    record = records[0]
    assert response.status == 200
    assert response.body == fixture_body(LMSTUDIO_JSON)
    assert received.path == fixture_meta(LMSTUDIO_JSON)["request_path"]
    assert "authorization" not in received.headers
    assert received.json() == fixture_meta(LMSTUDIO_JSON)["request"]
    assert record["usage_source"] == "reported"
    assert record["input_tokens"] == 138
    assert record["output_tokens"] == 201
    assert record["reasoning_tokens"] == 97
    assert record["cost_nanos"] == 73_400


@pytest.mark.e2e
def test_databricks_stream_usage_every_chunk(document, upstreams):
    """A Databricks stream with usage on every chunk is charged once, from its last."""
    replay(upstreams, "databricks", DATABRICKS_STREAM)
    body = {**fixture_meta(DATABRICKS_STREAM)["request"], "model": "to-databricks"}
    response, records = post_once(document, "/v1/chat/completions", body)
    received = upstreams["databricks"].received[0]
    record = records[0]
    assert response.status == 200
    assert response.body == fixture_body(DATABRICKS_STREAM)
    assert received.path == fixture_meta(DATABRICKS_STREAM)["request_path"]
    assert "model" not in received.json()
    assert received.json()["stream_options"] == {"include_usage": True}
    assert len(records) == 1
    assert record["usage_source"] == "reported"
    assert record["outcome"] == "completed"
    assert record["input_tokens"] == 4982
    assert record["output_tokens"] == 122
    assert record["cost_nanos"] == 16_776_000


@pytest.mark.e2e
def test_databricks_cut_stream_estimated(document, upstreams):
    """A Databricks stream cut before its finish chunk is partial, output estimated."""
    events = fixture_body(DATABRICKS_STREAM).split(b"\n\n")
    head = b"".join(event + b"\n\n" for event in events[:DATABRICKS_CUT_EVENTS])
    upstreams["databricks"].choose = Reply.fixture(
        DATABRICKS_STREAM, chunks=[head], hang_after=True
    )
    body = {**fixture_meta(DATABRICKS_STREAM)["request"], "model": "to-databricks"}
    with Stack(document) as stack:
        hang_up_after(stack, body, b"`working_dir`.")
        assert upstreams["databricks"].closed_early.wait(10)
        records = wait_for_records(stack)
    assert len(records) == 1
    record = records[0]
    assert record["outcome"] == "partial"
    assert record["usage_source"] == "estimated"
    assert record["input_tokens"] == 4982
    assert record["output_tokens"] == 29
    assert record["cost_nanos"] == DATABRICKS_CUT_COST_NANOS
