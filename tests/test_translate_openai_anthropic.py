"""OpenAI Chat Completions clients on Anthropic Messages upstreams."""

from __future__ import annotations

from typing import Any

import pytest

from lynkr_extproc.errors import InvalidRequestError
from lynkr_extproc.translate.chat_to_anthropic import (
    DEFAULT_MAX_TOKENS,
    ChatToAnthropic,
)
from lynkr_extproc.translate.chat_to_anthropic.stream import INCOMPLETE_MESSAGE
from tests.test_translate_common import (
    chat_text,
    chat_tool_calls,
    decode_events,
    fixture_body,
    fixture_json,
    fixture_meta,
    translate_checking_prefixes,
    translate_stream,
    translate_stream_bytewise,
    validate_anthropic_stream,
    validate_chat_stream,
)

MODEL = "claude-sonnet-4-5"
NOW = 1765000000


def translation() -> ChatToAnthropic:
    return ChatToAnthropic(clock=lambda: NOW + 0.9)


def translate(body: dict[str, Any]) -> dict[str, Any]:
    return translation().request(body, model=MODEL)


def request(messages: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    return {"model": "gpt-4o", "messages": messages, **fields}


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def assistant(content: Any, **fields: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": content, **fields}


def tool(call_id: str, content: Any) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": call_id, "content": content}


def call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": arguments},
    }


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


HELLO = [user("Hello")]


# -- requests: messages -------------------------------------------------------


def test_request_sets_upstream_model() -> None:
    """The upstream model replaces the client's model name."""
    assert translate(request(HELLO))["model"] == MODEL


def test_system_message_becomes_top_level_system() -> None:
    """One system message becomes the top-level system string."""
    upstream = translate(request([{"role": "system", "content": "Be brief."}, *HELLO]))
    assert upstream["system"] == "Be brief."
    assert upstream["messages"] == [{"role": "user", "content": [text("Hello")]}]


def test_system_and_developer_messages_join_in_order() -> None:
    """System and developer messages, wherever they are, join the system prompt."""
    messages = [
        {"role": "system", "content": "one"},
        {"role": "developer", "content": [text("two")]},
        *HELLO,
        {"role": "system", "content": "three"},
    ]
    assert translate(request(messages))["system"] == [
        text("one"),
        text("two"),
        text("three"),
    ]


def test_only_system_messages_become_user_message() -> None:
    """Without other messages, the system texts become the user message."""
    upstream = translate(request([{"role": "developer", "content": "Say hi."}]))
    assert upstream["messages"] == [{"role": "user", "content": [text("Say hi.")]}]
    assert "system" not in upstream


def test_empty_messages_rejected() -> None:
    """A request whose messages carry no content is rejected."""
    with pytest.raises(InvalidRequestError, match="at least one"):
        translate(request([user("")]))


def test_consecutive_user_messages_merge() -> None:
    """Consecutive user messages merge into one, as Anthropic alternates roles."""
    upstream = translate(request([user("a"), user([text("b")])]))
    assert upstream["messages"] == [{"role": "user", "content": [text("a"), text("b")]}]


def test_assistant_tool_calls_become_tool_use() -> None:
    """tool_calls become tool_use blocks after the assistant's text."""
    turn = assistant("Listing.", tool_calls=[call("call_1", "shell", '{"cmd": "ls"}')])
    message = translate(request([user("ls"), turn]))["messages"][1]
    assert message == {
        "role": "assistant",
        "content": [
            text("Listing."),
            {
                "type": "tool_use",
                "id": "call_1",
                "name": "shell",
                "input": {"cmd": "ls"},
            },
        ],
    }


def test_invalid_arguments_in_history_kept_raw() -> None:
    """Earlier tool arguments that are not JSON are kept under _raw, not rejected."""
    turn = assistant(None, tool_calls=[call("call_1", "shell", "{bad")])
    block = translate(request([user("x"), turn]))["messages"][1]["content"][0]
    assert block["input"] == {"_raw": "{bad"}


def test_tool_messages_merge_into_one_user_message() -> None:
    """Consecutive tool messages and a following user message form one user turn."""
    messages = [
        user("go"),
        assistant(
            None, tool_calls=[call("call_1", "a", "{}"), call("call_2", "b", "{}")]
        ),
        tool("call_1", "one"),
        tool("call_2", [text("two")]),
        user("next"),
    ]
    upstream = translate(request(messages))["messages"]
    assert [message["role"] for message in upstream] == ["user", "assistant", "user"]
    assert upstream[2]["content"] == [
        {"type": "tool_result", "tool_use_id": "call_1", "content": [text("one")]},
        {"type": "tool_result", "tool_use_id": "call_2", "content": [text("two")]},
        text("next"),
    ]


def test_empty_tool_output_has_no_content() -> None:
    """An empty tool output becomes a tool_result without content."""
    messages = [
        user("go"),
        assistant(None, tool_calls=[call("c", "a", "{}")]),
        tool("c", ""),
    ]
    result = translate(request(messages))["messages"][2]["content"][0]
    assert result == {"type": "tool_result", "tool_use_id": "c"}


def test_tool_ids_sanitized_on_both_sides() -> None:
    """Characters Anthropic rejects in ids are replaced alike in calls and results."""
    messages = [
        user("go"),
        assistant(None, tool_calls=[call("call:1.a", "a", "{}")]),
        tool("call:1.a", "ok"),
    ]
    upstream = translate(request(messages))["messages"]
    assert upstream[1]["content"][0]["id"] == "call_1_a"
    assert upstream[2]["content"][0]["tool_use_id"] == "call_1_a"


def test_empty_assistant_message_dropped() -> None:
    """An assistant message without text or calls is left out."""
    upstream = translate(request([user("a"), assistant(""), user("b")]))
    assert upstream["messages"] == [{"role": "user", "content": [text("a"), text("b")]}]


def test_image_data_url_becomes_base64_source() -> None:
    """An image_url data URL becomes a base64 image source."""
    part = {
        "type": "image_url",
        "image_url": {"url": "data:image/jpeg;base64,/9j/", "detail": "low"},
    }
    block = translate(request([user([part])]))["messages"][0]["content"][0]
    assert block == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/"},
    }


def test_image_http_url_becomes_url_source() -> None:
    """An http image URL becomes a URL image source."""
    part = {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}}
    block = translate(request([user([part])]))["messages"][0]["content"][0]
    assert block == {
        "type": "image",
        "source": {"type": "url", "url": "https://x.test/a.png"},
    }


def test_image_non_base64_data_url_rejected() -> None:
    """A data URL that is not base64 is rejected, naming the field."""
    part = {"type": "image_url", "image_url": {"url": "data:image/svg+xml,<svg/>"}}
    with pytest.raises(
        InvalidRequestError, match=r"messages\[0\]\.content\[0\]\.image_url\.url"
    ):
        translate(request([user([part])]))


def test_file_data_becomes_document() -> None:
    """A file part with base64 file_data becomes a document block."""
    part = {
        "type": "file",
        "file": {"file_data": "data:application/pdf;base64,JVBE", "filename": "a.pdf"},
    }
    block = translate(request([user([part])]))["messages"][0]["content"][0]
    assert block == {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"},
        "title": "a.pdf",
    }


def test_file_id_rejected() -> None:
    """A file part that refers to OpenAI file storage is rejected."""
    part = {"type": "file", "file": {"file_id": "file-1"}}
    with pytest.raises(InvalidRequestError, match="file_data"):
        translate(request([user([part])]))


def test_input_audio_rejected() -> None:
    """An audio content part is rejected, naming its type."""
    part = {"type": "input_audio", "input_audio": {"data": "AA", "format": "wav"}}
    with pytest.raises(InvalidRequestError, match="input_audio"):
        translate(request([user([part])]))


def test_function_role_rejected() -> None:
    """A deprecated function message is rejected."""
    with pytest.raises(InvalidRequestError, match=r"messages\[1\]\.role"):
        translate(
            request([user("x"), {"role": "function", "name": "f", "content": "1"}])
        )


# -- requests: parameters -----------------------------------------------------


def test_max_tokens_default_when_absent() -> None:
    """Anthropic requires max_tokens, so the documented default is sent."""
    assert translate(request(HELLO))["max_tokens"] == DEFAULT_MAX_TOKENS


def test_max_tokens_default_configurable() -> None:
    """The default max_tokens can be set per translation."""
    upstream = ChatToAnthropic(default_max_tokens=16000).request(
        request(HELLO), model=MODEL
    )
    assert upstream["max_tokens"] == 16000


def test_max_completion_tokens_preferred() -> None:
    """max_completion_tokens wins over the deprecated max_tokens."""
    upstream = translate(request(HELLO, max_completion_tokens=300, max_tokens=200))
    assert upstream["max_tokens"] == 300


def test_max_tokens_used_alone() -> None:
    """max_tokens alone is sent as max_tokens."""
    assert translate(request(HELLO, max_tokens=200))["max_tokens"] == 200


@pytest.mark.parametrize("n", [2, 0])
def test_n_other_than_one_rejected(n: int) -> None:
    """n other than 1 is rejected: Anthropic returns one choice."""
    with pytest.raises(InvalidRequestError, match=f"n={n}"):
        translate(request(HELLO, n=n))


def test_n_one_accepted() -> None:
    """n=1 is the default and is accepted."""
    assert "n" not in translate(request(HELLO, n=1))


def test_temperature_clamped_to_one() -> None:
    """A temperature above Anthropic's maximum of 1 is lowered to 1."""
    assert translate(request(HELLO, temperature=1.7))["temperature"] == 1.0


def test_top_p_dropped_with_temperature() -> None:
    """top_p is dropped when temperature is set: recent Claude models reject both."""
    upstream = translate(request(HELLO, temperature=0.3, top_p=0.9))
    assert upstream["temperature"] == 0.3
    assert "top_p" not in upstream


def test_top_p_alone_kept() -> None:
    """top_p alone is sent."""
    assert translate(request(HELLO, top_p=0.9))["top_p"] == 0.9


@pytest.mark.parametrize(
    ("stop", "expected"), [("END", ["END"]), (["a", "b"], ["a", "b"])]
)
def test_stop_becomes_stop_sequences(stop: Any, expected: list[str]) -> None:
    """stop, a string or a list, becomes stop_sequences."""
    assert translate(request(HELLO, stop=stop))["stop_sequences"] == expected


def test_stream_sent_without_stream_options() -> None:
    """stream is sent but not stream_options: Anthropic streams always carry usage."""
    upstream = translate(
        request(HELLO, stream=True, stream_options={"include_usage": True})
    )
    assert upstream["stream"] is True
    assert "stream_options" not in upstream


def test_user_becomes_metadata_user_id() -> None:
    """user becomes metadata.user_id."""
    assert translate(request(HELLO, user="u-1"))["metadata"] == {"user_id": "u-1"}


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        "strict": True,
    },
}


def test_tools_become_input_schema() -> None:
    """Function tools become Anthropic tools; strict is dropped."""
    assert translate(request(HELLO, tools=[WEATHER]))["tools"] == [
        {
            "name": "get_weather",
            "description": "Get the weather",
            "input_schema": WEATHER["function"]["parameters"],
        }
    ]


def test_tool_without_parameters_gets_empty_schema() -> None:
    """A function without parameters gets an empty object schema."""
    tool_def = {"type": "function", "function": {"name": "now"}}
    schema = translate(request(HELLO, tools=[tool_def]))["tools"][0]["input_schema"]
    assert schema == {"type": "object", "properties": {}}


def test_custom_tool_rejected() -> None:
    """A custom (free-form) tool is rejected, naming its type."""
    tool_def = {"type": "custom", "custom": {"name": "apply_patch"}}
    with pytest.raises(InvalidRequestError, match=r"tools\[0\]\.type"):
        translate(request(HELLO, tools=[tool_def]))


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"type": "auto"}),
        ("none", {"type": "none"}),
        ("required", {"type": "any"}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            {"type": "tool", "name": "get_weather"},
        ),
    ],
)
def test_tool_choice_mapping(choice: Any, expected: dict[str, Any]) -> None:
    """Each chat tool_choice maps to its Anthropic form."""
    assert (
        translate(request(HELLO, tools=[WEATHER], tool_choice=choice))["tool_choice"]
        == expected
    )


def test_allowed_tools_choice_rejected() -> None:
    """An allowed_tools choice is rejected."""
    choice = {"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": []}}
    with pytest.raises(InvalidRequestError, match="tool_choice"):
        translate(request(HELLO, tools=[WEATHER], tool_choice=choice))


def test_parallel_tool_calls_false_disables_parallel_use() -> None:
    """parallel_tool_calls false becomes disable_parallel_tool_use."""
    upstream = translate(request(HELLO, tools=[WEATHER], parallel_tool_calls=False))
    assert upstream["tool_choice"] == {
        "type": "auto",
        "disable_parallel_tool_use": True,
    }


def test_response_format_json_schema_becomes_output_config() -> None:
    """response_format json_schema becomes output_config.format."""
    schema = {
        "type": "object",
        "properties": {"a": {"type": "string"}},
        "additionalProperties": False,
    }
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "x", "schema": schema, "strict": True},
    }
    upstream = translate(request(HELLO, response_format=response_format))
    assert upstream["output_config"] == {
        "format": {"type": "json_schema", "schema": schema}
    }


def test_response_format_json_object_rejected() -> None:
    """response_format json_object is rejected: Anthropic needs a schema."""
    with pytest.raises(InvalidRequestError, match="json_object"):
        translate(request(HELLO, response_format={"type": "json_object"}))


def test_response_format_text_ignored() -> None:
    """response_format text is the default and adds nothing."""
    assert "output_config" not in translate(
        request(HELLO, response_format={"type": "text"})
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("functions", [{"name": "f"}]),
        ("function_call", "auto"),
        ("audio", {"voice": "alloy", "format": "wav"}),
        ("modalities", ["text", "audio"]),
        ("web_search_options", {}),
    ],
)
def test_unsupported_field_rejected(field: str, value: Any) -> None:
    """Fields Anthropic cannot serve are rejected, naming the field."""
    with pytest.raises(InvalidRequestError, match=field):
        translate(request(HELLO, **{field: value}))


DROPPED = {
    "reasoning_effort": "high",
    "seed": 7,
    "frequency_penalty": 0.5,
    "presence_penalty": 0.5,
    "logit_bias": {"50256": -100},
    "logprobs": True,
    "top_logprobs": 3,
    "store": True,
    "metadata": {"k": "v"},
    "service_tier": "flex",
    "prompt_cache_key": "k",
    "prediction": {"type": "content", "content": "x"},
    "verbosity": "low",
    "modalities": ["text"],
}


@pytest.mark.parametrize("field", sorted(DROPPED))
def test_dropped_field_not_sent(field: str) -> None:
    """A field without an Anthropic counterpart changes nothing upstream."""
    assert translate(request(HELLO, **{field: DROPPED[field]})) == translate(
        request(HELLO)
    )


@pytest.mark.parametrize(
    "name",
    [
        "openai/chat_completion",
        "openai/chat_completion_stream",
        "openai/chat_completion_tool_call",
    ],
)
def test_recorded_requests_translate(name: str) -> None:
    """The recorded chat requests translate into Anthropic requests."""
    upstream = translate(fixture_meta(name)["request"])
    assert upstream["messages"]
    assert upstream["max_tokens"] > 0


def test_recorded_developer_request_fields() -> None:
    """The recorded request's developer message, cap and temperature carry over."""
    upstream = translate(fixture_meta("openai/chat_completion_stream")["request"])
    assert upstream["max_tokens"] == 100
    assert upstream["temperature"] == 1
    assert upstream["stream"] is True
    assert upstream["messages"] == [
        {"role": "user", "content": [text("Hello, I'm a developer!")]}
    ]


# -- responses ----------------------------------------------------------------


def test_response_text_from_recorded_message() -> None:
    """The recorded Anthropic message becomes a chat completion with its text."""
    document = fixture_json("anthropic/message")
    completion = translation().response(document)
    assert completion["object"] == "chat.completion"
    assert completion["created"] == NOW
    assert completion["model"] == "claude-sonnet-4-5-20250929"
    (choice,) = completion["choices"]
    assert choice["message"]["content"] == document["content"][0]["text"]
    assert choice["message"]["role"] == "assistant"
    assert choice["finish_reason"] == "stop"


def test_response_usage_exact_with_cache() -> None:
    """prompt_tokens sums uncached, cache-read and cache-write input tokens."""
    usage = translation().response(fixture_json("anthropic/message"))["usage"]
    assert usage == {
        "prompt_tokens": 3 + 1111 + 418,
        "completion_tokens": 33,
        "total_tokens": 3 + 1111 + 418 + 33,
        "prompt_tokens_details": {"cached_tokens": 1111},
    }


def test_response_id_derived_from_message_id() -> None:
    """The completion id is chatcmpl- plus a hash of the message id."""
    first = translation().response(fixture_json("anthropic/message"))["id"]
    assert first.startswith("chatcmpl-")
    assert first == translation().response(fixture_json("anthropic/message"))["id"]


def test_response_tool_use_from_recorded_message() -> None:
    """The recorded tool_use becomes a tool call with JSON-string arguments."""
    completion = translation().response(fixture_json("anthropic/message_tool_use"))
    (choice,) = completion["choices"]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    (tool_call,) = choice["message"]["tool_calls"]
    assert tool_call["id"] == "toolu_01A9HHF5Ezy3oBrKmSgfASm9"
    assert tool_call["function"]["name"] == "get_weather"
    assert (
        tool_call["function"]["arguments"]
        == '{"location":"San Francisco, CA","units":"f"}'
    )
    assert completion["usage"]["prompt_tokens"] == 656
    assert completion["usage"]["completion_tokens"] == 74


@pytest.mark.parametrize(
    ("stop_reason", "expected"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("pause_turn", "stop"),
        ("model_context_window_exceeded", "length"),
    ],
)
def test_stop_reason_mapping(stop_reason: str, expected: str) -> None:
    """Each Anthropic stop_reason maps to its chat finish_reason."""
    document = {
        "id": "msg_1",
        "content": [text("x")],
        "stop_reason": stop_reason,
        "usage": {},
    }
    assert translation().response(document)["choices"][0]["finish_reason"] == expected


def test_thinking_blocks_dropped_from_response() -> None:
    """Thinking blocks are not returned to a chat client."""
    content = [{"type": "thinking", "thinking": "hmm", "signature": "s"}, text("4")]
    document = {
        "id": "msg_1",
        "content": content,
        "stop_reason": "end_turn",
        "usage": {},
    }
    assert translation().response(document)["choices"][0]["message"]["content"] == "4"


def test_anthropic_error_keeps_type() -> None:
    """An Anthropic error keeps its type as the OpenAI type and code."""
    body = {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }
    assert translation().error(529, body) == {
        "error": {
            "message": "Overloaded",
            "type": "overloaded_error",
            "param": None,
            "code": "overloaded_error",
        }
    }


def test_text_error_gets_status_type() -> None:
    """A text error body gets a type from the HTTP status."""
    error = translation().error(429, "Too Many Requests")["error"]
    assert error["type"] == "rate_limit_exceeded"
    assert error["message"] == "Too Many Requests"


# -- streams ------------------------------------------------------------------


def stream_for(*, include_usage: bool) -> Any:
    """Return a stream translator for a request with or without include_usage."""
    chat = translation()
    options = {"stream_options": {"include_usage": True}} if include_usage else {}
    chat.request(request(HELLO, stream=True, **options), model=MODEL)
    return chat.stream()


def test_recorded_text_stream_becomes_chunks() -> None:
    """The recorded text stream becomes valid chunks with its text and finish_reason."""
    body = translate_stream(
        stream_for(include_usage=True), fixture_body("anthropic/message_stream")
    )
    chunks = validate_chat_stream(body)
    assert chat_text(chunks) == "Hello!"
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    finishes = [
        chunk["choices"][0]["finish_reason"] for chunk in chunks if chunk["choices"]
    ]
    assert finishes[-1] == "stop"
    assert body.endswith(b"data: [DONE]\n\n")


def test_recorded_stream_usage_chunk_exact() -> None:
    """With include_usage the last chunk carries the message's usage."""
    body = translate_stream(
        stream_for(include_usage=True), fixture_body("anthropic/message_stream")
    )
    usage_chunk = validate_chat_stream(body)[-1]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"] == {
        "prompt_tokens": 25,
        "completion_tokens": 15,
        "total_tokens": 40,
        "prompt_tokens_details": {"cached_tokens": 0},
    }


def test_no_usage_chunk_without_include_usage() -> None:
    """Without include_usage no chunk carries usage."""
    body = translate_stream(
        stream_for(include_usage=False), fixture_body("anthropic/message_stream")
    )
    chunks = validate_chat_stream(body)
    assert all(chunk["choices"] for chunk in chunks)
    assert all("usage" not in chunk for chunk in chunks)


def test_recorded_tool_stream_becomes_tool_call() -> None:
    """The recorded tool-use stream becomes one tool call with the recorded input."""
    body = translate_stream(
        stream_for(include_usage=True),
        fixture_body("anthropic/message_stream_tool_use"),
    )
    chunks = validate_chat_stream(body)
    assert chat_text(chunks) == "Okay, let's check the weather for San Francisco, CA:"
    (tool_call,) = chat_tool_calls(chunks)
    assert tool_call["id"] == "toolu_01T1x1fJ34qAmk2tNTrN7Up6"
    assert tool_call["name"] == "get_weather"
    assert (
        tool_call["arguments"]
        == '{"location": "San Francisco, CA", "unit": "fahrenheit"}'
    )
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["usage"]["completion_tokens"] == 89


def test_bytewise_decoding_gives_same_chunks() -> None:
    """Feeding the decoder one byte at a time gives the same client bytes."""
    body = fixture_body("anthropic/message_stream_tool_use")
    whole = translate_stream(stream_for(include_usage=True), body)
    assert translate_stream_bytewise(stream_for(include_usage=True), body) == whole


def test_every_prefix_is_valid() -> None:
    """After every event fed, the chunks so far obey the stream rules."""
    outputs = translate_checking_prefixes(
        stream_for(include_usage=True),
        fixture_body("anthropic/message_stream_tool_use"),
        validate_chat_stream,
    )
    assert outputs[-1] == b""


def test_chunks_share_id_model_and_created() -> None:
    """Every chunk has the derived id, the upstream model and the clock's time."""
    body = translate_stream(
        stream_for(include_usage=True), fixture_body("anthropic/message_stream")
    )
    chunks = validate_chat_stream(body)
    assert {chunk["id"] for chunk in chunks} == {chunks[0]["id"]}
    assert chunks[0]["id"].startswith("chatcmpl-")
    assert {chunk["model"] for chunk in chunks} == {"claude-sonnet-4-5-20250929"}
    assert {chunk["created"] for chunk in chunks} == {NOW}


ERROR_EVENT = (
    b"event: error\n"
    b'data: {"type": "error", "error": {"type": "overloaded_error", '
    b'"message": "Overloaded"}}\n\n'
)


def test_error_event_becomes_error_chunk() -> None:
    """An Anthropic error event mid-stream becomes a last error chunk, no [DONE]."""
    recorded = fixture_body("anthropic/message_stream")
    cut = recorded[: recorded.index(b"event: content_block_stop")]
    body = translate_stream(stream_for(include_usage=True), cut + ERROR_EVENT)
    chunks = validate_chat_stream(body)
    assert chunks[-1] == {
        "error": {
            "message": "Overloaded",
            "type": "overloaded_error",
            "param": None,
            "code": "overloaded_error",
        }
    }
    assert b"[DONE]" not in body


def test_finish_with_error_gives_error_chunk() -> None:
    """finish(error=...) after a cut gives an error chunk with that message."""
    stream = stream_for(include_usage=False)
    recorded = fixture_body("anthropic/message_stream")
    body = translate_stream(
        stream, recorded[: recorded.index(b"event: ping")], finish=False
    )
    body += stream.finish(error="upstream reset the connection")
    assert (
        validate_chat_stream(body)[-1]["error"]["message"]
        == "upstream reset the connection"
    )


def test_cut_before_message_delta_is_error() -> None:
    """A stream cut before message_delta ends with an error chunk."""
    recorded = fixture_body("anthropic/message_stream")
    body = translate_stream(
        stream_for(include_usage=False),
        recorded[: recorded.index(b"event: message_delta")],
    )
    assert validate_chat_stream(body)[-1]["error"]["message"] == INCOMPLETE_MESSAGE


def test_cut_after_message_delta_closes() -> None:
    """A stream cut after message_delta still ends with [DONE]."""
    recorded = fixture_body("anthropic/message_stream")
    body = translate_stream(
        stream_for(include_usage=True),
        recorded[: recorded.index(b"event: message_stop")],
    )
    chunks = validate_chat_stream(body)
    assert chunks[-1]["usage"]["completion_tokens"] == 15


def test_nothing_after_message_stop() -> None:
    """finish and later events after message_stop produce nothing."""
    stream = stream_for(include_usage=False)
    translate_stream(stream, fixture_body("anthropic/message_stream"), finish=False)
    assert stream.finish() == b""
    assert stream.feed(decode_events(ERROR_EVENT)[0]) == b""


def test_thinking_deltas_dropped_from_stream() -> None:
    """Thinking blocks in the stream produce no chunks."""
    recorded = fixture_body("anthropic/message_stream")
    thinking = (
        b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
        b'"content_block":{"type":"thinking","thinking":""}}\n\n'
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
        b'"delta":{"type":"thinking_delta","thinking":"hmm"}}\n\n'
        b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
    )
    start = recorded.index(b"event: content_block_start")
    body = translate_stream(
        stream_for(include_usage=False), recorded[:start] + thinking + recorded[start:]
    )
    chunks = validate_chat_stream(body)
    assert chat_text(chunks) == "Hello!"
    assert b"hmm" not in body


def test_recorded_anthropic_streams_are_valid() -> None:
    """The recorded inputs themselves pass the Anthropic validator."""
    assert validate_anthropic_stream(fixture_body("anthropic/message_stream"))
    assert validate_anthropic_stream(fixture_body("anthropic/message_stream_tool_use"))
