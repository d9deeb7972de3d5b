"""Translations composed through Chat Completions.

Three pairs have no direct translation and run two that meet at chat:
Anthropic Messages and Responses clients on Bedrock Converse upstreams,
and Responses clients on Anthropic Messages upstreams.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from lynkr_extproc.errors import InvalidRequestError
from lynkr_extproc.formats import BY_NAME, bedrock_converse
from lynkr_extproc.framing import EventStreamFramer
from lynkr_extproc.response_reader import ResponseReader
from lynkr_extproc.translate import FIELD_RULES, SUPPORTED_PAIRS, translation_for
from lynkr_extproc.translate.anthropic_to_chat import AnthropicToChat
from lynkr_extproc.translate.chat_to_anthropic import ChatToAnthropic
from lynkr_extproc.translate.chat_to_converse import ChatToConverse
from lynkr_extproc.translate.composed import STEP_MARK, ComposedTranslation
from lynkr_extproc.translate.responses_to_chat import ResponsesToChat
from tests.test_translate_chat_converse import (
    TOOL_RESPONSE,
    exception_frame,
    recorded_until,
    tool_stream,
)
from tests.test_translate_common import (
    anthropic_blocks,
    decode_events,
    fixture_body,
    fixture_json,
    fixture_meta,
    responses_items,
    translate_checking_prefixes,
    translate_stream,
    validate_anthropic_stream,
    validate_responses_stream,
)

NOW = 1765000000
NOVA = "amazon.nova-micro-v1:0"
SONNET_ON_BEDROCK = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
SONNET = "claude-sonnet-4-5"
RECORDED_STREAM = "bedrock/converse_stream"


def to_converse(outer: Any) -> ComposedTranslation:
    return ComposedTranslation(outer, ChatToConverse(clock=lambda: NOW, new_id=lambda: "c1"))


def responses_to_anthropic() -> ComposedTranslation:
    return ComposedTranslation(ResponsesToChat(), ChatToAnthropic(clock=lambda: NOW))


def feed_frames(translator: Any, body: bytes) -> bytes:
    """Decode an event stream body, feed every event, finish, and return the client bytes."""
    out = bytearray()
    for event, _ in EventStreamFramer().feed_blocks(body):
        if event is not None:
            out += translator.feed(event)
    return bytes(out + translator.finish())


def feed_frames_bytewise(translator: Any, body: bytes) -> bytes:
    framer = EventStreamFramer()
    out = bytearray()
    for offset in range(len(body)):
        for event, _ in framer.feed_blocks(body[offset : offset + 1]):
            out += translator.feed(event)
    return bytes(out + translator.finish())


def recorded_text() -> str:
    events = fixture_meta(RECORDED_STREAM)["events"]
    return "".join(p["delta"]["text"] for kind, p in events if kind == "contentBlockDelta")


# -- the composed pairs -------------------------------------------------------

COMPOSED = [
    ("anthropic_messages", "bedrock_converse"),
    ("openai_responses", "bedrock_converse"),
    ("openai_responses", "anthropic_messages"),
]


@pytest.mark.parametrize(("client", "upstream"), COMPOSED)
def test_composed_pairs_supported(client: str, upstream: str) -> None:
    """Each composed pair is supported and runs through chat."""
    translation = translation_for(client, upstream)
    assert (client, upstream) in SUPPORTED_PAIRS
    assert isinstance(translation, ComposedTranslation)
    assert translation.client_api == client
    assert translation.upstream_api == upstream
    assert translation.outer.upstream_api == "openai_chat"
    assert translation.inner.client_api == "openai_chat"


def test_supported_pairs_exact() -> None:
    """The direct pairs and the three composed ones, and no others."""
    assert SUPPORTED_PAIRS == {
        ("anthropic_messages", "openai_chat"),
        ("openai_chat", "anthropic_messages"),
        ("openai_chat", "bedrock_converse"),
        ("openai_responses", "openai_chat"),
        *COMPOSED,
    }


def test_composed_translations_not_shared() -> None:
    """Each call builds new inner and outer translations."""
    first = translation_for("anthropic_messages", "bedrock_converse")
    second = translation_for("anthropic_messages", "bedrock_converse")
    assert first.outer is not second.outer
    assert first.inner is not second.inner


def test_translations_must_meet_at_chat() -> None:
    """Two translations that do not meet at chat cannot be composed."""
    with pytest.raises(ValueError, match="do not meet at openai_chat"):
        ComposedTranslation(ChatToAnthropic(), ChatToConverse())


def test_field_rules_are_the_union() -> None:
    """A composed pair's rules are the outer rules, then the marked inner rules."""
    outer = FIELD_RULES[("anthropic_messages", "openai_chat")]
    inner = FIELD_RULES[("openai_chat", "bedrock_converse")]
    rules = FIELD_RULES[("anthropic_messages", "bedrock_converse")]
    assert rules[: len(outer)] == outer
    assert len(rules) == len(outer) + len(inner)
    for rule, inner_rule in zip(rules[len(outer) :], inner):
        assert rule.field == inner_rule.field + STEP_MARK
        assert rule.action == inner_rule.action
        assert rule.reason == inner_rule.reason


# -- Anthropic Messages (Claude Code) on Bedrock Converse ---------------------

CLAUDE_CODE_REQUEST = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 1024,
    "stream": True,
    "system": [
        {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}
    ],
    "thinking": {"type": "enabled", "budget_tokens": 2000},
    "metadata": {"user_id": "user_abc"},
    "tools": [
        {
            "name": "Bash",
            "description": "Run a command",
            "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}},
        }
    ],
    "messages": [
        {"role": "user", "content": [{"type": "text", "text": "List files"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Running ls."},
                {"type": "tool_use", "id": "toolu_01", "name": "Bash", "input": {"command": "ls"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01", "content": "a.txt\nb.txt"},
                {"type": "text", "text": "Which is newer?"},
            ],
        },
    ],
}


def test_anthropic_request_to_converse() -> None:
    """A Claude Code turn becomes a Converse body with tools and tool history."""
    upstream = to_converse(AnthropicToChat()).request(CLAUDE_CODE_REQUEST, model=SONNET_ON_BEDROCK)
    assert upstream == {
        "system": [{"text": "You are Claude Code."}],
        "messages": [
            {"role": "user", "content": [{"text": "List files"}]},
            {
                "role": "assistant",
                "content": [
                    {"text": "Running ls."},
                    {"toolUse": {"toolUseId": "toolu_01", "name": "Bash", "input": {"command": "ls"}}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"toolResult": {"toolUseId": "toolu_01", "content": [{"text": "a.txt\nb.txt"}]}},
                    {"text": "Which is newer?"},
                ],
            },
        ],
        "inferenceConfig": {"maxTokens": 1024},
        "toolConfig": {
            "tools": [
                {
                    "toolSpec": {
                        "name": "Bash",
                        "description": "Run a command",
                        "inputSchema": {
                            "json": {"type": "object", "properties": {"command": {"type": "string"}}}
                        },
                    }
                }
            ]
        },
    }


def test_inner_rejection_names_chat_step() -> None:
    """An image URL, rejected by the Converse step, is named as a chat request field."""
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 10,
        "messages": [
            {"role": "user", "content": [{"type": "image", "source": {"type": "url", "url": "https://x.test/a.png"}}]}
        ],
    }
    with pytest.raises(InvalidRequestError) as caught:
        to_converse(AnthropicToChat()).request(body, model=NOVA)
    message = caught.value.message
    assert message.startswith("In the request translated to Chat Completions, messages[0].content[0].image_url.url:")
    assert "base64 data URL" in message


def test_anthropic_response_from_converse() -> None:
    """The recorded cache-read response becomes an Anthropic message with cache reads."""
    translation = to_converse(AnthropicToChat())
    translation.request({**CLAUDE_CODE_REQUEST, "stream": False}, model=SONNET_ON_BEDROCK)
    message = translation.response(fixture_json("bedrock/converse_cache_read"))
    assert message["type"] == "message"
    assert message["id"].startswith("msg_")
    assert message["model"] == SONNET_ON_BEDROCK
    assert message["content"] == [{"type": "text", "text": "21"}]
    assert message["stop_reason"] == "end_turn"
    assert message["usage"] == {
        "input_tokens": 2,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 1322,
        "output_tokens": 5,
    }


def test_anthropic_cache_writes_become_input() -> None:
    """Chat has no cache-write count, so Converse cache writes reach the client as input."""
    translation = to_converse(AnthropicToChat())
    translation.request({**CLAUDE_CODE_REQUEST, "stream": False}, model=SONNET_ON_BEDROCK)
    usage = translation.response(fixture_json("bedrock/converse_cache_write"))["usage"]
    assert usage["input_tokens"] == 1324
    assert usage["cache_creation_input_tokens"] == 0


def test_anthropic_tool_use_response() -> None:
    """toolUse blocks become tool_use blocks with object input."""
    translation = to_converse(AnthropicToChat())
    translation.request({**CLAUDE_CODE_REQUEST, "stream": False}, model=NOVA)
    message = translation.response(TOOL_RESPONSE)
    assert message["content"] == [
        {"type": "text", "text": "Let me check."},
        {"type": "tool_use", "id": "tooluse_abc", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "tooluse_def", "name": "now", "input": {}},
    ]
    assert message["stop_reason"] == "tool_use"


def test_anthropic_error_from_bedrock() -> None:
    """A Bedrock 429 body becomes an Anthropic rate_limit_error."""
    error = to_converse(AnthropicToChat()).error(429, {"message": "Too many requests, please wait."})
    assert error == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "Too many requests, please wait."},
    }


def anthropic_stream() -> Any:
    translation = to_converse(AnthropicToChat())
    translation.request(CLAUDE_CODE_REQUEST, model=NOVA)
    return translation.stream()


def test_anthropic_stream_from_converse() -> None:
    """The recorded ConverseStream becomes a valid Anthropic stream with its usage."""
    payloads = validate_anthropic_stream(feed_frames(anthropic_stream(), fixture_body(RECORDED_STREAM)))
    (block,) = anthropic_blocks(payloads)
    usage = fixture_meta(RECORDED_STREAM)["usage"]
    assert block == {"type": "text", "text": recorded_text()}
    assert payloads[-2]["delta"]["stop_reason"] == "end_turn"
    assert payloads[-2]["usage"] == {
        "input_tokens": usage["input_tokens"],
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": usage["output_tokens"],
    }


def test_anthropic_tool_stream_from_converse() -> None:
    """A streamed tool use becomes a tool_use block with its streamed input."""
    payloads = validate_anthropic_stream(feed_frames(anthropic_stream(), tool_stream()))
    blocks = anthropic_blocks(payloads)
    assert blocks == [
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "tooluse_1", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "tooluse_2", "name": "now", "input": {}},
    ]
    assert payloads[-2]["delta"]["stop_reason"] == "tool_use"
    assert payloads[-2]["usage"]["cache_read_input_tokens"] == 150


def test_anthropic_stream_bytewise_same() -> None:
    """Feeding the framer one byte at a time gives the same Anthropic stream."""
    body = fixture_body(RECORDED_STREAM)
    assert feed_frames_bytewise(anthropic_stream(), body) == feed_frames(anthropic_stream(), body)


def test_anthropic_stream_every_prefix_valid() -> None:
    """After every Converse event, the Anthropic events so far obey the stream rules."""
    translator = anthropic_stream()
    stream = b""
    for event, _ in EventStreamFramer().feed_blocks(tool_stream()):
        stream += translator.feed(event)
        validate_anthropic_stream(stream, complete=False)
    validate_anthropic_stream(stream)
    assert translator.finish() == b""


def test_anthropic_stream_exception_mid_stream() -> None:
    """A throttlingException mid-stream ends the Anthropic stream with an error event."""
    body = recorded_until("contentBlockStop")
    body += exception_frame("throttlingException", {"message": "Too many tokens, please wait."})
    payloads = validate_anthropic_stream(feed_frames(anthropic_stream(), body))
    assert payloads[-1] == {
        "type": "error",
        "error": {"type": "api_error", "message": "Too many tokens, please wait."},
    }
    assert "message_stop" not in [payload["type"] for payload in payloads]


def test_anthropic_stream_finish_with_error() -> None:
    """finish(error=...) reaches the client as an Anthropic error event."""
    translator = anthropic_stream()
    out = bytearray()
    for event, _ in EventStreamFramer().feed_blocks(recorded_until("messageStop")):
        out += translator.feed(event)
    out += translator.finish(error="upstream reset the connection")
    payloads = validate_anthropic_stream(bytes(out))
    assert payloads[-1]["error"]["message"] == "upstream reset the connection"
    assert translator.finish() == b""


# -- Responses (Codex) on Bedrock Converse ------------------------------------

CODEX_REQUEST = {
    "model": "gpt-5-codex",
    "instructions": "You are Codex.",
    "stream": True,
    "store": False,
    "tools": [
        {
            "type": "function",
            "name": "shell",
            "description": "Runs a shell command",
            "strict": False,
            "parameters": {"type": "object", "properties": {"command": {"type": "string"}}},
        }
    ],
    "input": [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "List files"}]},
        {"type": "function_call", "call_id": "call_1", "name": "shell", "arguments": '{"command":"ls"}'},
        {"type": "function_call_output", "call_id": "call_1", "output": "a.txt"},
    ],
}


def test_responses_request_to_converse() -> None:
    """A Codex turn becomes a Converse body with its instructions, tools and history."""
    upstream = to_converse(ResponsesToChat()).request(CODEX_REQUEST, model=NOVA)
    assert upstream == {
        "system": [{"text": "You are Codex."}],
        "messages": [
            {"role": "user", "content": [{"text": "List files"}]},
            {
                "role": "assistant",
                "content": [{"toolUse": {"toolUseId": "call_1", "name": "shell", "input": {"command": "ls"}}}],
            },
            {
                "role": "user",
                "content": [{"toolResult": {"toolUseId": "call_1", "content": [{"text": "a.txt"}]}}],
            },
        ],
        "toolConfig": {
            "tools": [
                {
                    "toolSpec": {
                        "name": "shell",
                        "description": "Runs a shell command",
                        "inputSchema": {
                            "json": {"type": "object", "properties": {"command": {"type": "string"}}}
                        },
                    }
                }
            ]
        },
    }


def responses_on_converse() -> ComposedTranslation:
    translation = to_converse(ResponsesToChat())
    translation.request(CODEX_REQUEST, model=NOVA)
    return translation


def test_responses_response_from_converse() -> None:
    """A Converse tool-use response becomes message and function_call items."""
    response = responses_on_converse().response(TOOL_RESPONSE)
    message, first, second = response["output"]
    assert response["status"] == "completed"
    assert response["model"] == NOVA
    assert response["created_at"] == NOW
    assert message["content"][0]["text"] == "Let me check."
    assert (first["call_id"], first["name"], first["arguments"]) == ("tooluse_abc", "get_weather", '{"city":"Paris"}')
    assert (second["call_id"], second["name"], second["arguments"]) == ("tooluse_def", "now", "{}")
    assert response["usage"] == {
        "input_tokens": 40,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": 12,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 52,
    }


def test_responses_stream_from_converse() -> None:
    """The recorded ConverseStream becomes a completed Responses stream with its usage."""
    payloads = validate_responses_stream(feed_frames(responses_on_converse().stream(), fixture_body(RECORDED_STREAM)))
    (item,) = responses_items(payloads)
    assert payloads[-1]["type"] == "response.completed"
    assert item["content"][0]["text"] == recorded_text()
    assert payloads[-1]["response"]["usage"] == {
        "input_tokens": 13,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": 82,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 95,
    }


def test_responses_stream_exception_mid_stream() -> None:
    """A Converse exception mid-stream ends the Responses stream with response.failed."""
    body = recorded_until("contentBlockStop")
    body += exception_frame("throttlingException", {"message": "Too many tokens, please wait."})
    payloads = validate_responses_stream(feed_frames(responses_on_converse().stream(), body))
    failed = payloads[-1]
    assert failed["type"] == "response.failed"
    assert failed["response"]["error"]["message"] == "Too many tokens, please wait."


def test_responses_error_from_bedrock() -> None:
    """A Bedrock 400 body becomes an OpenAI error for the Responses client."""
    error = responses_on_converse().error(400, {"message": "Malformed input request."})
    assert error == {
        "error": {
            "message": "Malformed input request.",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }


# -- Responses (Codex) on Anthropic Messages ----------------------------------


def test_responses_request_to_anthropic() -> None:
    """A Codex turn becomes an Anthropic body with tool_use and tool_result blocks."""
    upstream = responses_to_anthropic().request(CODEX_REQUEST, model=SONNET)
    assert upstream == {
        "model": SONNET,
        "max_tokens": 4096,
        "system": "You are Codex.",
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "List files"}]},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "call_1", "name": "shell", "input": {"command": "ls"}}],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "call_1",
                        "content": [{"type": "text", "text": "a.txt"}],
                    }
                ],
            },
        ],
        "tools": [
            {
                "name": "shell",
                "description": "Runs a shell command",
                "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}},
            }
        ],
        "stream": True,
    }


def responses_on_anthropic() -> ComposedTranslation:
    translation = responses_to_anthropic()
    translation.request(CODEX_REQUEST, model=SONNET)
    return translation


def test_responses_response_from_anthropic() -> None:
    """The recorded Anthropic message becomes a Responses object with exact usage."""
    document = fixture_json("anthropic/message")
    response = responses_on_anthropic().response(document)
    (item,) = response["output"]
    assert response["status"] == "completed"
    assert response["model"] == "claude-sonnet-4-5-20250929"
    assert item["content"][0]["text"] == document["content"][0]["text"]
    # input 3 + cache reads 1111 + cache writes 418 = 1532, plus 33 output.
    assert response["usage"] == {
        "input_tokens": 1532,
        "input_tokens_details": {"cached_tokens": 1111},
        "output_tokens": 33,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 1565,
    }


def test_responses_stream_from_anthropic() -> None:
    """The recorded Anthropic tool stream becomes a valid Responses stream."""
    payloads = validate_responses_stream(
        translate_stream(responses_on_anthropic().stream(), fixture_body("anthropic/message_stream_tool_use"))
    )
    message, call = responses_items(payloads)
    assert message["content"][0]["text"] == "Okay, let's check the weather for San Francisco, CA:"
    assert call["call_id"] == "toolu_01T1x1fJ34qAmk2tNTrN7Up6"
    assert json.loads(call["arguments"]) == {"location": "San Francisco, CA", "unit": "fahrenheit"}
    assert payloads[-1]["type"] == "response.completed"
    assert payloads[-1]["response"]["usage"]["output_tokens"] == 89


def test_responses_stream_from_anthropic_prefixes() -> None:
    """After every Anthropic event, the Responses events so far obey the stream rules."""
    outputs = translate_checking_prefixes(
        responses_on_anthropic().stream(),
        fixture_body("anthropic/message_stream"),
        validate_responses_stream,
    )
    assert outputs[-1] == b""


ANTHROPIC_ERROR_EVENT = (
    b"event: error\n"
    b'data: {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}\n\n'
)


def test_responses_anthropic_error_mid_stream() -> None:
    """An Anthropic error event mid-stream becomes response.failed."""
    recorded = fixture_body("anthropic/message_stream")
    body = recorded[: recorded.index(b"event: content_block_stop")] + ANTHROPIC_ERROR_EVENT
    payloads = validate_responses_stream(translate_stream(responses_on_anthropic().stream(), body))
    assert payloads[-1]["type"] == "response.failed"
    assert payloads[-1]["response"]["error"]["message"] == "Overloaded"


def test_responses_error_from_anthropic() -> None:
    """An Anthropic overloaded body keeps its type for the Responses client."""
    document = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    error = responses_on_anthropic().error(529, document)
    assert error["error"]["message"] == "Overloaded"
    assert error["error"]["type"] == "overloaded_error"


def test_composed_stream_nothing_after_end() -> None:
    """Events after the end of a composed stream produce nothing."""
    translator = responses_on_anthropic().stream()
    translate_stream(translator, fixture_body("anthropic/message_stream"), finish=False)
    assert translator.finish() == b""
    assert translator.feed(decode_events(ANTHROPIC_ERROR_EVENT)[0]) == b""


def test_cut_before_message_stop_keeps_usage() -> None:
    """Cut after message_delta, the inner finish still sends usage on to the client."""
    recorded = fixture_body("anthropic/message_stream")
    body = recorded[: recorded.index(b"event: message_stop")]
    payloads = validate_responses_stream(translate_stream(responses_on_anthropic().stream(), body))
    assert payloads[-1]["type"] == "response.completed"
    assert payloads[-1]["response"]["usage"]["input_tokens"] == 25
    assert payloads[-1]["response"]["usage"]["output_tokens"] == 15


def test_stream_without_request_keeps_usage() -> None:
    """A composed stream whose request() never ran still sends the usage chunk."""
    translator = translation_for("anthropic_messages", "bedrock_converse").stream()
    payloads = validate_anthropic_stream(feed_frames(translator, fixture_body(RECORDED_STREAM)))
    assert payloads[-2]["usage"]["input_tokens"] == 13
    assert payloads[-2]["usage"]["output_tokens"] == 82


# -- through the response reader ----------------------------------------------

READER_REQUESTS = {
    "openai_chat": {
        "model": "m",
        "stream": True,
        "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": "Hi"}],
    },
    "anthropic_messages": {**CLAUDE_CODE_REQUEST, "stream": True},
    "openai_responses": CODEX_REQUEST,
}
READER_OUTER = {"anthropic_messages": AnthropicToChat, "openai_responses": ResponsesToChat}


def reader_translation(client: str) -> Any:
    """Return a deterministic translation from `client` to Converse, its request made."""
    inner = ChatToConverse(clock=lambda: NOW, new_id=lambda: "c1")
    translation = ComposedTranslation(READER_OUTER[client](), inner) if client in READER_OUTER else inner
    translation.request(READER_REQUESTS[client], model=NOVA)
    return translation


def read_cut(name: str, client: str, cut: int) -> tuple[Any, ...]:
    """Read a recorded Converse response cut in two at `cut` with a ResponseReader."""
    body = fixture_body(name)
    reader = ResponseReader(
        bedrock_converse, BY_NAME[client], reader_translation(client), strip_usage=False, request_id="t"
    )
    changed, removed = reader.on_headers({":status": "200", **fixture_meta(name)["headers"]})
    out = [reader.on_body(body[:cut], end=False), reader.on_body(body[cut:], end=True)]
    flags: set[str] = set()
    return changed, removed, b"".join(out), reader.observed(flags), frozenset(flags)


@pytest.mark.parametrize("client", sorted(READER_REQUESTS))
@pytest.mark.parametrize("name", ["bedrock/converse_stream", "bedrock/converse_cache_read"])
def test_reader_cuts_give_same_output(name: str, client: str) -> None:
    """A Converse response cut at each point of cut_points gives the same bytes and usage."""
    whole = read_cut(name, client, 0)
    changed, removed, _, observed, flags = whole
    usage = fixture_meta(name)["usage"]
    streamed = "events" in fixture_meta(name)
    assert changed == {"content-type": "text/event-stream" if streamed else "application/json"}
    assert removed == ["content-length"]
    assert observed[0].input_tokens == usage["input_tokens"]
    assert observed[0].output_tokens == usage["output_tokens"]
    assert observed[0].cache_read_tokens == usage["cache_read_tokens"]
    assert observed[1] is True
    assert flags == frozenset()
    for cut in cut_points(name):
        assert read_cut(name, client, cut) == whole, f"cut at byte {cut}"


def cut_points(name: str) -> list[int]:
    """Return every byte of a JSON body, or of a stream each frame's edges and every 13th byte."""
    body = fixture_body(name)
    if "events" not in fixture_meta(name):
        return list(range(1, len(body) + 1))
    points = set(range(1, len(body) + 1, 13))
    edge = 0
    for event, raw in EventStreamFramer().feed_blocks(body):
        edge += len(raw)
        points.update({edge - 1, edge, edge + 1})
    return sorted(point for point in points if 0 < point <= len(body))
