"""Anthropic Messages clients on OpenAI Chat Completions upstreams."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lynkr_extproc.errors import InvalidRequestError
from lynkr_extproc.translate import translation_for
from lynkr_extproc.translate.anthropic_to_chat import AnthropicToChat
from lynkr_extproc.translate._chat_calls import INCOMPLETE_MESSAGE
from lynkr_extproc.translate.chat_to_anthropic import ChatToAnthropic
from tests.test_translate_common import (
    CHAT_USAGE,
    anthropic_blocks,
    chat_chunk,
    chat_text_and_tool_stream,
    decode_events,
    fixture_body,
    fixture_json,
    fixture_meta,
    sse,
    tool_fragment,
    translate_checking_prefixes,
    translate_stream,
    translate_stream_bytewise,
    validate_anthropic_stream,
)

MODEL = "qwen3:8b"


def translate(body: dict[str, Any]) -> dict[str, Any]:
    return AnthropicToChat().request(body, model=MODEL)


def request(messages: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    return {
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "messages": messages,
        **fields,
    }


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def assistant(content: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": content}


HELLO = [user("Hello")]


# -- requests: system, messages, content --------------------------------------


def test_request_sets_upstream_model() -> None:
    """The upstream model replaces the client's model name."""
    assert translate(request(HELLO))["model"] == MODEL


def test_system_string_becomes_first_message() -> None:
    """A system string becomes the first chat message, role system."""
    messages = translate(request(HELLO, system="Be brief."))["messages"]
    assert messages[0] == {"role": "system", "content": "Be brief."}
    assert messages[1] == {"role": "user", "content": "Hello"}


def test_system_blocks_join_without_cache_control() -> None:
    """System text blocks join into one system message; cache_control is dropped."""
    system = [
        {
            "type": "text",
            "text": "You are Claude Code.",
            "cache_control": {"type": "ephemeral"},
        },
        {"type": "text", "text": "Be brief."},
    ]
    messages = translate(request(HELLO, system=system))["messages"]
    assert messages[0] == {
        "role": "system",
        "content": "You are Claude Code.\nBe brief.",
    }


def test_system_role_message_stays_in_place() -> None:
    """A role system message inside messages stays where it is."""
    body = request(
        [user("a"), assistant("b"), {"role": "system", "content": "now c"}, user("d")]
    )
    roles = [message["role"] for message in translate(body)["messages"]]
    assert roles == ["user", "assistant", "system", "user"]
    assert translate(body)["messages"][2]["content"] == "now c"


def test_user_text_blocks_join_into_string() -> None:
    """Text-only user content becomes one string that every chat server takes."""
    content = [
        {"type": "text", "text": "<system-reminder>x</system-reminder>"},
        {"type": "text", "text": "Fix it", "cache_control": {"type": "ephemeral"}},
    ]
    messages = translate(request([user(content)]))["messages"]
    assert messages == [
        {"role": "user", "content": "<system-reminder>x</system-reminder>\nFix it"}
    ]


def test_image_base64_becomes_data_url() -> None:
    """A base64 image becomes an image_url part with a data URL."""
    image = {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"},
    }
    content = translate(
        request([user([{"type": "text", "text": "What is it?"}, image])])
    )
    parts = content["messages"][0]["content"]
    assert parts[0] == {"type": "text", "text": "What is it?"}
    assert parts[1] == {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64,iVBO"},
    }


def test_image_url_source_keeps_url() -> None:
    """A URL image source becomes an image_url part with that URL."""
    image = {"type": "image", "source": {"type": "url", "url": "https://x.test/a.png"}}
    parts = translate(request([user([image])]))["messages"][0]["content"]
    assert parts == [
        {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}}
    ]


def test_image_file_source_rejected() -> None:
    """An image from Anthropic's Files API is rejected, naming the field."""
    image = {"type": "image", "source": {"type": "file", "file_id": "file_1"}}
    with pytest.raises(
        InvalidRequestError, match=r"messages\[0\]\.content\[0\]\.source\.type"
    ):
        translate(request([user([image])]))


def test_text_document_becomes_text() -> None:
    """A plain-text document becomes text headed by its title."""
    document = {
        "type": "document",
        "title": "notes.txt",
        "source": {"type": "text", "media_type": "text/plain", "data": "line 1"},
    }
    assert (
        translate(request([user([document])]))["messages"][0]["content"]
        == "notes.txt\n\nline 1"
    )


def test_pdf_document_rejected() -> None:
    """A PDF document is rejected: the chat upstreams take no PDF."""
    document = {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"},
    }
    with pytest.raises(InvalidRequestError, match=r"document source of type 'base64'"):
        translate(request([user([document])]))


def test_unknown_role_rejected() -> None:
    """A message role other than user, assistant or system is rejected."""
    with pytest.raises(InvalidRequestError, match=r"messages\[0\]\.role"):
        translate(request([{"role": "tool", "content": "x"}]))


def test_thinking_blocks_in_history_dropped() -> None:
    """Thinking and redacted thinking blocks of earlier turns are left out."""
    history = assistant(
        [
            {"type": "thinking", "thinking": "hmm", "signature": "sig"},
            {"type": "redacted_thinking", "data": "xx"},
            {"type": "text", "text": "Done."},
        ]
    )
    messages = translate(request([user("a"), history, user("b")]))["messages"]
    assert messages[1] == {"role": "assistant", "content": "Done."}


def test_server_tool_blocks_in_history_dropped() -> None:
    """A server tool call and its result in an earlier turn are left out."""
    history = assistant(
        [
            {
                "type": "server_tool_use",
                "id": "srvtoolu_1",
                "name": "web_search",
                "input": {},
            },
            {
                "type": "web_search_tool_result",
                "tool_use_id": "srvtoolu_1",
                "content": [],
            },
            {"type": "text", "text": "Found it."},
        ]
    )
    messages = translate(request([user("a"), history]))["messages"]
    assert messages[1] == {"role": "assistant", "content": "Found it."}


# -- requests: tools ----------------------------------------------------------

BASH = {
    "name": "Bash",
    "description": "Run a shell command",
    "input_schema": {
        "type": "object",
        "properties": {"command": {"type": "string"}},
        "required": ["command"],
    },
    "cache_control": {"type": "ephemeral"},
}


def test_tool_definition_becomes_function() -> None:
    """input_schema becomes the function's parameters; cache_control is dropped."""
    tools = translate(request(HELLO, tools=[BASH]))["tools"]
    assert tools == [
        {
            "type": "function",
            "function": {
                "name": "Bash",
                "description": "Run a shell command",
                "parameters": BASH["input_schema"],
            },
        }
    ]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, "auto"),
        ({"type": "any"}, "required"),
        ({"type": "none"}, "none"),
        (
            {"type": "tool", "name": "Bash"},
            {"type": "function", "function": {"name": "Bash"}},
        ),
    ],
)
def test_tool_choice_mapping(choice: dict[str, Any], expected: Any) -> None:
    """Each Anthropic tool_choice maps to its chat form."""
    assert (
        translate(request(HELLO, tools=[BASH], tool_choice=choice))["tool_choice"]
        == expected
    )


def test_disable_parallel_tool_use_sets_parallel_false() -> None:
    """disable_parallel_tool_use becomes parallel_tool_calls false."""
    choice = {"type": "auto", "disable_parallel_tool_use": True}
    assert (
        translate(request(HELLO, tools=[BASH], tool_choice=choice))[
            "parallel_tool_calls"
        ]
        is False
    )


def test_no_tools_no_tool_choice() -> None:
    """Without tools, tool_choice is not sent: chat servers reject it alone."""
    upstream = translate(request(HELLO, tools=[], tool_choice={"type": "auto"}))
    assert "tools" not in upstream
    assert "tool_choice" not in upstream


def test_server_tool_rejected() -> None:
    """An Anthropic server tool is rejected, naming its type."""
    tools = [{"type": "web_search_20250305", "name": "web_search", "max_uses": 5}]
    with pytest.raises(
        InvalidRequestError, match=r"tools\[0\]\.type.*web_search_20250305"
    ):
        translate(request(HELLO, tools=tools))


def test_tool_use_becomes_tool_call() -> None:
    """An assistant tool_use becomes a tool call with JSON-string arguments."""
    turn = assistant(
        [
            {"type": "text", "text": "Listing."},
            {
                "type": "tool_use",
                "id": "toolu_1",
                "name": "Bash",
                "input": {"command": "ls"},
            },
        ]
    )
    message = translate(request([user("ls"), turn]))["messages"][1]
    assert message["content"] == "Listing."
    assert message["tool_calls"] == [
        {
            "id": "toolu_1",
            "type": "function",
            "function": {"name": "Bash", "arguments": '{"command":"ls"}'},
        }
    ]


def test_tool_use_alone_has_null_content() -> None:
    """An assistant turn with only tool calls has content null."""
    turn = assistant(
        [{"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {}}]
    )
    message = translate(request([user("x"), turn]))["messages"][1]
    assert message["content"] is None
    assert message["tool_calls"][0]["function"]["arguments"] == "{}"


def tool_result(content: Any = None, **fields: Any) -> dict[str, Any]:
    block = {"type": "tool_result", "tool_use_id": "toolu_1", **fields}
    if content is not None:
        block["content"] = content
    return block


def test_tool_result_string_becomes_tool_message() -> None:
    """A tool_result with string content becomes a tool message."""
    messages = translate(request([user([tool_result("file.txt")])]))["messages"]
    assert messages == [
        {"role": "tool", "tool_call_id": "toolu_1", "content": "file.txt"}
    ]


def test_tool_result_text_blocks_join() -> None:
    """A tool_result's text blocks join into the tool message's content."""
    content = [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]
    messages = translate(request([user([tool_result(content)])]))["messages"]
    assert messages[0]["content"] == "a\nb"


def test_tool_result_error_is_noted() -> None:
    """is_error is stated in the tool message's text."""
    messages = translate(request([user([tool_result("exit 1", is_error=True)])]))[
        "messages"
    ]
    assert messages[0]["content"] == "The tool call failed:\nexit 1"


def test_tool_result_empty_error_is_noted() -> None:
    """A failed tool call without content still states that it failed."""
    messages = translate(request([user([tool_result(is_error=True)])]))["messages"]
    assert messages[0]["content"] == "The tool call failed."


def test_tool_results_then_other_content_in_order() -> None:
    """Tool messages come first, then a user message with the rest in order."""
    content = [
        tool_result("one"),
        {"type": "tool_result", "tool_use_id": "toolu_2", "content": "two"},
        {"type": "text", "text": "and then"},
        {"type": "text", "text": "continue"},
    ]
    messages = translate(request([user(content)]))["messages"]
    assert [message["role"] for message in messages] == ["tool", "tool", "user"]
    assert messages[1]["tool_call_id"] == "toolu_2"
    assert messages[2]["content"] == "and then\ncontinue"


def test_tool_result_image_moves_to_user_message() -> None:
    """An image in a tool result goes to a user message after the tool messages."""
    image = {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "AA"},
    }
    content = [tool_result([{"type": "text", "text": "screenshot"}, image])]
    messages = translate(request([user(content)]))["messages"]
    assert messages[0] == {
        "role": "tool",
        "tool_call_id": "toolu_1",
        "content": "screenshot",
    }
    assert messages[1]["role"] == "user"
    assert messages[1]["content"][0]["text"].startswith(
        "The result of tool call toolu_1"
    )
    assert messages[1]["content"][1]["image_url"]["url"] == "data:image/png;base64,AA"


# -- requests: parameters, dropped and rejected fields ------------------------


def test_sampling_fields_copied() -> None:
    """max_tokens, temperature, top_p and stop_sequences are copied."""
    body = request(HELLO, temperature=0.2, top_p=0.9, stop_sequences=["END", "STOP"])
    upstream = translate(body)
    assert upstream["max_tokens"] == 1024
    assert upstream["temperature"] == 0.2
    assert upstream["top_p"] == 0.9
    assert upstream["stop"] == ["END", "STOP"]


def test_stream_sets_include_usage() -> None:
    """A streamed request requests usage from the chat upstream."""
    upstream = translate(request(HELLO, stream=True))
    assert upstream["stream"] is True
    assert upstream["stream_options"] == {"include_usage": True}


def test_unstreamed_request_has_no_stream_options() -> None:
    """A buffered request sends neither stream nor stream_options."""
    upstream = translate(request(HELLO, stream=False))
    assert "stream" not in upstream
    assert "stream_options" not in upstream


def test_metadata_user_id_becomes_user() -> None:
    """metadata.user_id becomes user."""
    upstream = translate(request(HELLO, metadata={"user_id": "user_abc_session_1"}))
    assert upstream["user"] == "user_abc_session_1"
    assert "metadata" not in upstream


DROPPED = {
    "thinking": {"type": "enabled", "budget_tokens": 31999},
    "context_management": {"edits": [{"type": "clear_tool_uses_20250919"}]},
    "cache_control": {"type": "ephemeral", "ttl": "5m"},
    "top_k": 40,
    "service_tier": "auto",
    "output_config": {"effort": "high"},
}


@pytest.mark.parametrize("field", sorted(DROPPED))
def test_dropped_field_not_sent(field: str) -> None:
    """A field without a chat counterpart changes nothing in the upstream body."""
    plain = translate(request(HELLO))
    assert translate(request(HELLO, **{field: DROPPED[field]})) == plain


def test_unknown_field_not_sent() -> None:
    """A field this translation does not know is not passed upstream."""
    assert "future_field" not in translate(request(HELLO, future_field=1))


def test_output_format_json_schema_becomes_response_format() -> None:
    """output_config.format json_schema becomes response_format json_schema."""
    schema = {"type": "object", "properties": {"title": {"type": "string"}}}
    config = {"effort": "low", "format": {"type": "json_schema", "schema": schema}}
    upstream = translate(request(HELLO, output_config=config))
    assert upstream["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": schema},
    }


def test_output_format_other_type_rejected() -> None:
    """An output format other than json_schema is rejected."""
    config = {"format": {"type": "grammar", "grammar": "x"}}
    with pytest.raises(InvalidRequestError, match=r"output_config\.format\.type"):
        translate(request(HELLO, output_config=config))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("mcp_servers", [{"type": "url", "url": "https://mcp.test", "name": "x"}]),
        ("container", "container_1"),
    ],
)
def test_server_state_field_rejected(field: str, value: Any) -> None:
    """Fields that need Anthropic's servers are rejected, naming the field."""
    with pytest.raises(InvalidRequestError, match=field):
        translate(request(HELLO, **{field: value}))


@pytest.mark.parametrize(
    "name",
    ["anthropic/message", "anthropic/message_tool_use", "anthropic/message_stream"],
)
def test_recorded_requests_translate(name: str) -> None:
    """The recorded Anthropic requests translate with their messages and limits."""
    body = fixture_meta(name)["request"]
    upstream = translate(body)
    expected = len(body["messages"]) + (1 if body.get("system") else 0)
    assert len(upstream["messages"]) == expected
    assert upstream["max_tokens"] == body["max_tokens"]
    assert "cache_control" not in json.dumps(upstream)


# -- responses ----------------------------------------------------------------


def test_response_text_from_recorded_completion() -> None:
    """The recorded chat completion becomes one text block and end_turn."""
    document = fixture_json("openai/chat_completion")
    message = AnthropicToChat().response(document)
    assert message["type"] == "message"
    assert message["role"] == "assistant"
    assert message["model"] == "gpt-5-nano-2025-08-07"
    assert message["content"] == [
        {"type": "text", "text": document["choices"][0]["message"]["content"]}
    ]
    assert message["stop_reason"] == "end_turn"
    assert message["stop_sequence"] is None


def test_response_usage_from_recorded_completion() -> None:
    """Usage maps exactly: prompt to input, completion to output, no cache."""
    usage = AnthropicToChat().response(fixture_json("openai/chat_completion"))["usage"]
    assert usage == {
        "input_tokens": 8,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": 377,
    }


def test_response_id_derived_from_upstream_id() -> None:
    """The message id is msg_ plus a hash of the upstream id, the same each time."""
    document = fixture_json("openai/chat_completion")
    first = AnthropicToChat().response(document)["id"]
    assert first.startswith("msg_")
    assert first == AnthropicToChat().response(document)["id"]
    other = dict(document, id="chatcmpl-other")
    assert AnthropicToChat().response(other)["id"] != first


def test_response_tool_call_from_recorded_completion() -> None:
    """The recorded tool call becomes a tool_use block with parsed input."""
    message = AnthropicToChat().response(
        fixture_json("openai/chat_completion_tool_call")
    )
    assert message["content"] == [
        {
            "type": "tool_use",
            "id": "call_8fxy20OEu9ulvvaa5b5CzVA4",
            "name": "get_current_weather",
            "input": {"location": "Boston, MA", "unit": "fahrenheit"},
        }
    ]
    assert message["stop_reason"] == "tool_use"
    assert message["usage"]["input_tokens"] == 162
    assert message["usage"]["output_tokens"] == 287


def completion(
    message: dict[str, Any], finish_reason: str = "stop", **fields: Any
) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", **message},
                "finish_reason": finish_reason,
            }
        ],
        **fields,
    }


@pytest.mark.parametrize(
    ("finish_reason", "expected"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("content_filter", "refusal"),
        (None, "end_turn"),
    ],
)
def test_finish_reason_mapping(finish_reason: str | None, expected: str) -> None:
    """Each chat finish_reason maps to its Anthropic stop_reason."""
    message = AnthropicToChat().response(completion({"content": "x"}, finish_reason))
    assert message["stop_reason"] == expected


def test_tool_calls_with_stop_finish_give_tool_use() -> None:
    """Tool calls end in tool_use even when the server reports stop."""
    call = {
        "id": "c1",
        "type": "function",
        "function": {"name": "Bash", "arguments": "{}"},
    }
    message = AnthropicToChat().response(
        completion({"content": None, "tool_calls": [call]})
    )
    assert message["stop_reason"] == "tool_use"


def test_cached_tokens_leave_input_tokens() -> None:
    """Cached prompt tokens count as cache reads, not input."""
    message = AnthropicToChat().response(completion({"content": "x"}, usage=CHAT_USAGE))
    assert message["usage"]["input_tokens"] == 20
    assert message["usage"]["cache_read_input_tokens"] == 100
    assert message["usage"]["output_tokens"] == 30


def test_invalid_arguments_kept_raw() -> None:
    """Arguments that are not JSON are kept under _raw."""
    call = {
        "id": "c1",
        "type": "function",
        "function": {"name": "Bash", "arguments": '{"command": "l'},
    }
    message = AnthropicToChat().response(
        completion({"tool_calls": [call]}, "tool_calls")
    )
    assert message["content"][0]["input"] == {"_raw": '{"command": "l'}


def test_missing_call_id_is_derived() -> None:
    """A tool call without an id gets a stable toolu_ id."""
    call = {"type": "function", "function": {"name": "Bash", "arguments": "{}"}}
    message = AnthropicToChat().response(
        completion({"tool_calls": [call]}, "tool_calls")
    )
    assert message["content"][0]["id"].startswith("toolu_")


def test_reasoning_content_dropped() -> None:
    """Reasoning text from llama.cpp or Ollama is not returned."""
    message = AnthropicToChat().response(
        completion({"content": "4", "reasoning_content": "2+2", "reasoning": "2+2"})
    )
    assert message["content"] == [{"type": "text", "text": "4"}]


def test_refusal_becomes_text() -> None:
    """A refusal message is returned as text with stop_reason refusal."""
    message = AnthropicToChat().response(
        completion({"content": None, "refusal": "I can't help."}, "content_filter")
    )
    assert message["content"] == [{"type": "text", "text": "I can't help."}]
    assert message["stop_reason"] == "refusal"


# -- errors -------------------------------------------------------------------


def test_openai_error_becomes_anthropic_error() -> None:
    """An OpenAI error body becomes an Anthropic error with the status's type."""
    body = {
        "error": {
            "message": "model not found",
            "type": "invalid_request_error",
            "code": None,
        }
    }
    assert AnthropicToChat().error(404, body) == {
        "type": "error",
        "error": {"type": "not_found_error", "message": "model not found"},
    }


def test_ollama_error_string_becomes_anthropic_error() -> None:
    """Ollama's {"error": "..."} body keeps its text."""
    error = AnthropicToChat().error(
        500, {"error": "llama runner process has terminated"}
    )
    assert error["error"] == {
        "type": "api_error",
        "message": "llama runner process has terminated",
    }


def test_text_error_becomes_anthropic_error() -> None:
    """A non-JSON error body, passed as text, keeps its text."""
    error = AnthropicToChat().error(503, "upstream connect error or disconnect")
    assert error["error"]["type"] == "overloaded_error"
    assert error["error"]["message"] == "upstream connect error or disconnect"


# -- streams ------------------------------------------------------------------


def test_recorded_stream_is_valid_anthropic_stream() -> None:
    """The recorded chat stream becomes a valid stream that stops on max_tokens."""
    body = translate_stream(
        AnthropicToChat().stream(), fixture_body("openai/chat_completion_stream")
    )
    payloads = validate_anthropic_stream(body)
    assert [data["type"] for data in payloads] == [
        "message_start",
        "message_delta",
        "message_stop",
    ]
    assert payloads[1]["delta"]["stop_reason"] == "max_tokens"


def test_recorded_stream_usage_exact() -> None:
    """message_delta carries the final usage chunk's counts."""
    body = translate_stream(
        AnthropicToChat().stream(), fixture_body("openai/chat_completion_stream")
    )
    usage = validate_anthropic_stream(body)[1]["usage"]
    assert usage == {
        "input_tokens": 12,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": 100,
    }


def test_message_start_usage_zero_before_usage_chunk() -> None:
    """message_start reports 0 tokens when the first chunk carries no usage."""
    body = translate_stream(
        AnthropicToChat().stream(), fixture_body("openai/chat_completion_stream")
    )
    usage = validate_anthropic_stream(body)[0]["message"]["usage"]
    assert usage["input_tokens"] == 0
    assert usage["output_tokens"] == 0


def test_bytewise_decoding_gives_same_stream() -> None:
    """Feeding the decoder one byte at a time gives the same client bytes."""
    body = chat_text_and_tool_stream()
    whole = translate_stream(AnthropicToChat().stream(), body)
    assert translate_stream_bytewise(AnthropicToChat().stream(), body) == whole


def test_every_prefix_is_valid() -> None:
    """After every event fed, the client stream so far obeys the order rules."""
    outputs = translate_checking_prefixes(
        AnthropicToChat().stream(),
        chat_text_and_tool_stream(),
        validate_anthropic_stream,
    )
    assert outputs[0].startswith(b"event: message_start\n")


def test_text_and_tool_calls_become_blocks() -> None:
    """Text and each tool call get their own blocks, in order."""
    body = translate_stream(AnthropicToChat().stream(), chat_text_and_tool_stream())
    blocks = anthropic_blocks(validate_anthropic_stream(body))
    assert blocks == [
        {"type": "text", "text": "Let me check."},
        {
            "type": "tool_use",
            "id": "call_a",
            "name": "Bash",
            "input": {"command": "ls"},
        },
        {
            "type": "tool_use",
            "id": "call_b",
            "name": "Read",
            "input": {"file_path": "/a"},
        },
    ]


def test_tool_stream_stop_reason_and_usage() -> None:
    """A tool call stream ends in tool_use with the usage chunk's counts."""
    payloads = validate_anthropic_stream(
        translate_stream(AnthropicToChat().stream(), chat_text_and_tool_stream())
    )
    delta = payloads[-2]
    assert delta["delta"]["stop_reason"] == "tool_use"
    assert delta["usage"]["input_tokens"] == 20
    assert delta["usage"]["cache_read_input_tokens"] == 100
    assert delta["usage"]["output_tokens"] == 30


def test_name_after_arguments_is_buffered() -> None:
    """Arguments sent before the call's name wait until the block can start."""
    body = b"".join(
        [
            chat_chunk(
                {"tool_calls": [tool_fragment(0, call_id="c1", arguments='{"a"')]}
            ),
            chat_chunk({"tool_calls": [tool_fragment(0, name="f", arguments=": 1}")]}),
            chat_chunk({}, finish_reason="tool_calls"),
            sse("[DONE]"),
        ]
    )
    blocks = anthropic_blocks(
        validate_anthropic_stream(translate_stream(AnthropicToChat().stream(), body))
    )
    assert blocks == [{"type": "tool_use", "id": "c1", "name": "f", "input": {"a": 1}}]


def test_calls_reusing_index_zero_stay_apart() -> None:
    """Calls that all use index 0 but new ids become separate blocks."""
    body = b"".join(
        [
            chat_chunk(
                {
                    "tool_calls": [
                        tool_fragment(0, call_id="c1", name="f", arguments="{}")
                    ]
                }
            ),
            chat_chunk(
                {
                    "tool_calls": [
                        tool_fragment(0, call_id="c2", name="g", arguments="{}")
                    ]
                }
            ),
            chat_chunk({}, finish_reason="tool_calls"),
            sse("[DONE]"),
        ]
    )
    payloads = validate_anthropic_stream(
        translate_stream(AnthropicToChat().stream(), body)
    )
    starts = [data for data in payloads if data["type"] == "content_block_start"]
    assert [data["content_block"]["id"] for data in starts] == ["c1", "c2"]
    assert [data["index"] for data in starts] == [0, 1]


def test_late_fragment_of_closed_call_dropped() -> None:
    """A fragment for a call whose block closed is dropped; the stream stays valid."""
    stream = AnthropicToChat().stream()
    body = b"".join(
        [
            chat_chunk(
                {
                    "tool_calls": [
                        tool_fragment(0, call_id="c1", name="f", arguments="{}")
                    ]
                }
            ),
            chat_chunk(
                {
                    "tool_calls": [
                        tool_fragment(1, call_id="c2", name="g", arguments="{}")
                    ]
                }
            ),
            chat_chunk({"tool_calls": [tool_fragment(0, arguments=" ")]}),
            chat_chunk({}, finish_reason="tool_calls"),
            sse("[DONE]"),
        ]
    )
    validate_anthropic_stream(translate_stream(stream, body))
    assert stream.dropped_fragments == 1


def test_reasoning_deltas_dropped() -> None:
    """reasoning_content deltas open no block."""
    body = b"".join(
        [
            chat_chunk({"reasoning_content": "thinking..."}),
            chat_chunk({"content": "4"}),
            chat_chunk({}, finish_reason="stop"),
            sse("[DONE]"),
        ]
    )
    blocks = anthropic_blocks(
        validate_anthropic_stream(translate_stream(AnthropicToChat().stream(), body))
    )
    assert blocks == [{"type": "text", "text": "4"}]


def test_upstream_error_chunk_becomes_error_event() -> None:
    """An error chunk mid-stream ends the client stream with an error event."""
    body = b"".join(
        [
            chat_chunk({"content": "partial"}),
            sse({"error": {"message": "model crashed", "type": "server_error"}}),
        ]
    )
    payloads = validate_anthropic_stream(
        translate_stream(AnthropicToChat().stream(), body)
    )
    assert payloads[-1] == {
        "type": "error",
        "error": {"type": "api_error", "message": "model crashed"},
    }


def test_finish_with_error_gives_error_event() -> None:
    """finish(error=...) after a cut gives an error event with that message."""
    stream = AnthropicToChat().stream()
    body = translate_stream(stream, chat_chunk({"content": "par"}), finish=False)
    body += stream.finish(error="upstream reset the connection")
    payloads = validate_anthropic_stream(body)
    assert payloads[-1]["error"]["message"] == "upstream reset the connection"


def test_cut_without_finish_reason_is_error() -> None:
    """A stream that ends before any finish_reason gives an error event."""
    body = translate_stream(AnthropicToChat().stream(), chat_chunk({"content": "par"}))
    payloads = validate_anthropic_stream(body)
    assert payloads[-1]["error"]["message"] == INCOMPLETE_MESSAGE


def test_missing_done_after_finish_reason_closes() -> None:
    """A finish_reason without [DONE] still ends with message_delta and message_stop."""
    body = chat_chunk({"content": "ok"}) + chat_chunk({}, finish_reason="stop")
    payloads = validate_anthropic_stream(
        translate_stream(AnthropicToChat().stream(), body)
    )
    assert payloads[-1]["type"] == "message_stop"


def test_nothing_after_done() -> None:
    """Events and finish after [DONE] produce nothing."""
    stream = AnthropicToChat().stream()
    translate_stream(
        stream, fixture_body("openai/chat_completion_stream"), finish=False
    )
    assert stream.finish() == b""
    assert stream.feed(decode_events(chat_chunk({"content": "x"}))[0]) == b""


def test_done_alone_gives_complete_message() -> None:
    """A stream of only [DONE] still gives a complete, empty message."""
    payloads = validate_anthropic_stream(
        translate_stream(AnthropicToChat().stream(), sse("[DONE]"))
    )
    assert [data["type"] for data in payloads] == [
        "message_start",
        "message_delta",
        "message_stop",
    ]


def test_usage_missing_reports_zero() -> None:
    """Without a usage chunk, message_delta reports 0 tokens."""
    body = (
        chat_chunk({"content": "ok"})
        + chat_chunk({}, finish_reason="stop")
        + sse("[DONE]")
    )
    usage = validate_anthropic_stream(
        translate_stream(AnthropicToChat().stream(), body)
    )[-2]["usage"]
    assert usage["output_tokens"] == 0


# -- recorded Anthropic streams through both translations ---------------------


@pytest.mark.parametrize(
    "name", ["anthropic/message_stream", "anthropic/message_stream_tool_use"]
)
def test_recorded_anthropic_stream_round_trip(name: str) -> None:
    """A recorded Anthropic stream, as chat chunks and back, keeps its blocks."""
    recorded = validate_anthropic_stream(fixture_body(name))
    chat_side = ChatToAnthropic(clock=lambda: 0)
    chat_side.request(
        {
            "model": "m",
            "messages": [user("x")],
            "stream_options": {"include_usage": True},
        },
        model="m",
    )
    chat_body = translate_stream(chat_side.stream(), fixture_body(name))
    payloads = validate_anthropic_stream(
        translate_stream(AnthropicToChat().stream(), chat_body)
    )
    assert anthropic_blocks(payloads) == anthropic_blocks(recorded)
    assert payloads[-2]["delta"]["stop_reason"] == recorded[-2]["delta"]["stop_reason"]
    assert (
        payloads[-2]["usage"]["output_tokens"] == recorded[-2]["usage"]["output_tokens"]
    )
    assert (
        payloads[-2]["usage"]["input_tokens"]
        == recorded[0]["message"]["usage"]["input_tokens"]
    )


# -- tool-call round trip -----------------------------------------------------

CLAUDE_CODE_TURN = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 32000,
    "stream": True,
    "system": [
        {
            "type": "text",
            "text": "You are Claude Code, Anthropic's official CLI for Claude.",
        },
        {"type": "text", "text": "Use tools.", "cache_control": {"type": "ephemeral"}},
    ],
    "tools": [BASH],
    "metadata": {"user_id": "user_1_account__session_2"},
    "thinking": {"type": "enabled", "budget_tokens": 31999},
    "messages": [
        user(
            [
                {
                    "type": "text",
                    "text": "Use Bash to write lynkr-tool-ran to marker.txt.",
                }
            ]
        ),
        assistant(
            [
                {"type": "text", "text": "Okay, let's do that:"},
                {
                    "type": "tool_use",
                    "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
                    "name": "Bash",
                    "input": {"command": "echo lynkr-tool-ran > marker.txt"},
                },
            ]
        ),
        user([tool_result("", tool_use_id="toolu_01T1x1fJ34qAmk2tNTrN7Up6")]),
    ],
}


def test_claude_code_turn_pairs_calls_and_results() -> None:
    """The tool call and its tool message carry the same id in the chat request."""
    messages = translate(copy.deepcopy(CLAUDE_CODE_TURN))["messages"]
    assert [message["role"] for message in messages] == [
        "system",
        "user",
        "assistant",
        "tool",
    ]
    call = messages[2]["tool_calls"][0]
    assert messages[3]["tool_call_id"] == call["id"]
    assert json.loads(call["function"]["arguments"]) == {
        "command": "echo lynkr-tool-ran > marker.txt"
    }


def test_tool_call_response_feeds_next_request() -> None:
    """A tool call returned to Claude Code comes back with the same id and input."""
    translation = AnthropicToChat()
    message = translation.response(fixture_json("openai/chat_completion_tool_call"))
    (tool_use,) = message["content"]
    next_turn = request(
        [
            user("What is the weather in Boston?"),
            assistant(message["content"]),
            user(
                [
                    {
                        "type": "tool_result",
                        "tool_use_id": tool_use["id"],
                        "content": "72F",
                    }
                ]
            ),
        ]
    )
    messages = translation.request(next_turn, model=MODEL)["messages"]
    call = messages[1]["tool_calls"][0]
    assert call["id"] == "call_8fxy20OEu9ulvvaa5b5CzVA4"
    assert call["function"]["arguments"] == json.dumps(
        tool_use["input"], separators=(",", ":")
    )
    assert messages[2] == {"role": "tool", "tool_call_id": call["id"], "content": "72F"}


def test_request_round_trip_through_both_translations() -> None:
    """A Claude Code turn sent to chat and back to Anthropic keeps its messages."""
    chat_body = translate(copy.deepcopy(CLAUDE_CODE_TURN))
    back = ChatToAnthropic().request(chat_body, model="claude-sonnet-4-5")
    assert (
        back["system"]
        == "You are Claude Code, Anthropic's official CLI for Claude.\nUse tools."
    )
    assert (
        back["messages"][1]["content"][1]
        == CLAUDE_CODE_TURN["messages"][1]["content"][1]
    )
    assert back["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6"}
    ]
    assert back["tools"] == [
        {key: BASH[key] for key in ("name", "description", "input_schema")}
    ]


# -- random requests ----------------------------------------------------------

_text = st.text(min_size=1, max_size=20)
_ids = st.from_regex(r"toolu_[A-Za-z0-9]{1,8}", fullmatch=True)
_image = st.builds(
    lambda data, url: {
        "type": "image",
        "source": data if url is None else {"type": "url", "url": url},
    },
    st.builds(
        lambda d: {"type": "base64", "media_type": "image/png", "data": d}, _text
    ),
    st.none() | st.just("https://x.test/a.png"),
)
_text_block = st.builds(lambda text: {"type": "text", "text": text}, _text)
_tool_result = st.builds(
    lambda tool_id, content, error: {
        "type": "tool_result",
        "tool_use_id": tool_id,
        "content": content,
        "is_error": error,
    },
    _ids,
    _text | st.lists(_text_block | _image, max_size=3),
    st.booleans(),
)
_user_content = _text | st.lists(
    _text_block | _image | _tool_result, min_size=1, max_size=4
)
_tool_use = st.builds(
    lambda tool_id, name, value: {
        "type": "tool_use",
        "id": tool_id,
        "name": name,
        "input": {"v": value},
    },
    _ids,
    st.sampled_from(["Bash", "Read"]),
    st.integers() | _text,
)
_thinking = st.just({"type": "thinking", "thinking": "x", "signature": "s"})
_assistant_content = _text | st.lists(
    _text_block | _tool_use | _thinking, min_size=1, max_size=4
)
_turns = st.lists(st.tuples(_user_content, _assistant_content), min_size=1, max_size=3)
_tool_def = st.builds(
    lambda name: {"name": name, "input_schema": {"type": "object", "properties": {}}},
    st.sampled_from(["Bash", "Read"]),
)


@st.composite
def anthropic_requests(draw: st.DrawFn) -> dict[str, Any]:
    """Draw a valid Anthropic Messages request with optional fields."""
    messages = []
    for user_content, assistant_content in draw(_turns):
        messages.append(user(user_content))
        messages.append(assistant(assistant_content))
    messages.append(user(draw(_user_content)))
    body: dict[str, Any] = {
        "model": "claude",
        "max_tokens": draw(st.integers(1, 64000)),
        "messages": messages,
    }
    optional = {
        "system": _text | st.lists(_text_block, max_size=2),
        "tools": st.lists(_tool_def, max_size=2),
        "tool_choice": st.sampled_from(
            [{"type": "auto"}, {"type": "any"}, {"type": "none"}]
        ),
        "temperature": st.floats(0, 1),
        "top_p": st.floats(0, 1),
        "top_k": st.integers(1, 100),
        "stop_sequences": st.lists(_text, max_size=3),
        "stream": st.booleans(),
        "metadata": st.builds(lambda text: {"user_id": text}, _text),
        "thinking": st.builds(
            lambda n: {"type": "enabled", "budget_tokens": n}, st.integers(1024, 32000)
        ),
    }
    for name, strategy in optional.items():
        if draw(st.booleans()):
            body[name] = draw(strategy)
    return body


@settings(max_examples=200, deadline=None)
@given(anthropic_requests())
def test_random_requests_translate(body: dict[str, Any]) -> None:
    """Random valid Anthropic requests give chat requests with the required fields."""
    upstream = translation_for("anthropic_messages", "openai_chat").request(
        body, model=MODEL
    )
    assert upstream["model"] == MODEL
    assert upstream["max_tokens"] == body["max_tokens"]
    assert upstream["messages"]
    for message in upstream["messages"]:
        assert message["role"] in ("system", "user", "assistant", "tool")
        assert "content" in message
    for message in upstream["messages"]:
        if message["role"] == "tool":
            assert message["tool_call_id"].startswith("toolu_")
    assert (upstream.get("stream_options") == {"include_usage": True}) == (
        body.get("stream") is True
    )
    assert json.loads(json.dumps(upstream)) == upstream
