"""OpenAI Chat Completions clients on AWS Bedrock Converse upstreams."""

from __future__ import annotations

import json
import struct
import zlib
from typing import Any

import pytest

from lynkr_extproc.errors import InvalidRequestError
from lynkr_extproc.framing import EventStreamFramer, encode_event_stream
from lynkr_extproc.translate import FIELD_RULES
from lynkr_extproc.translate.chat_to_converse import ChatToConverse
from lynkr_extproc.translate.chat_to_converse.request import (
    EMPTY_TOOL_RESULT,
    converse_tool_id,
)
from lynkr_extproc.translate.chat_to_converse.stream import INCOMPLETE_MESSAGE
from tests.test_translate_common import (
    chat_text,
    chat_tool_calls,
    fixture_body,
    fixture_json,
    fixture_meta,
    validate_chat_stream,
)

MODEL = "amazon.nova-micro-v1:0"
NOW = 1765000000
COMPLETION_ID = "chatcmpl-test0001"


def translation() -> ChatToConverse:
    return ChatToConverse(clock=lambda: NOW + 0.9, new_id=lambda: "test0001")


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


def image(url: str) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url}}


def function_tool(name: str, **function: Any) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, **function}}


HELLO = [user("Hello")]
PNG_DATA = "iVBORw0KGgo="


# -- requests: messages -------------------------------------------------------


def test_request_has_no_model_or_stream() -> None:
    """The body names no model and no stream: the provider sets the path."""
    upstream = translate(request(HELLO, stream=True))
    assert upstream == {"messages": [{"role": "user", "content": [{"text": "Hello"}]}]}


def test_recorded_request_rebuilt_exactly() -> None:
    """The chat form of the recorded ConverseStream request gives that request."""
    body = request(
        [
            {"role": "system", "content": "You are a helpful chatbot."},
            user("What is the capital of France?"),
        ],
        temperature=0.0,
        stream=True,
    )
    assert translate(body) == fixture_meta("bedrock/converse_stream")["request"]


def test_system_and_developer_messages_join_in_order() -> None:
    """System and developer messages, wherever they are, become system blocks."""
    messages = [
        {"role": "system", "content": "one"},
        {"role": "developer", "content": [{"type": "text", "text": "two"}]},
        *HELLO,
        {"role": "system", "content": "three"},
    ]
    upstream = translate(request(messages))
    assert upstream["system"] == [{"text": "one"}, {"text": "two"}, {"text": "three"}]
    assert upstream["messages"] == [{"role": "user", "content": [{"text": "Hello"}]}]


def test_only_system_messages_become_user_message() -> None:
    """Without other messages, the system texts become the user message."""
    upstream = translate(request([{"role": "developer", "content": "Say hi."}]))
    assert upstream["messages"] == [{"role": "user", "content": [{"text": "Say hi."}]}]
    assert "system" not in upstream


def test_empty_messages_rejected() -> None:
    """A request whose messages carry no content is rejected."""
    with pytest.raises(InvalidRequestError, match="Converse requires at least one"):
        translate(request([user("")]))


def test_user_and_assistant_text() -> None:
    """Text turns become text blocks, refusal text included."""
    messages = [
        user("Hi"),
        assistant([{"type": "refusal", "refusal": "No."}]),
        user([{"type": "text", "text": "Why?"}]),
        assistant("Because.", refusal="Policy."),
    ]
    assert translate(request(messages))["messages"] == [
        {"role": "user", "content": [{"text": "Hi"}]},
        {"role": "assistant", "content": [{"text": "No."}]},
        {"role": "user", "content": [{"text": "Why?"}]},
        {"role": "assistant", "content": [{"text": "Because."}, {"text": "Policy."}]},
    ]


def test_consecutive_same_role_messages_merge() -> None:
    """Consecutive messages of one role merge, as Converse alternates roles."""
    messages = [user("a"), user([{"type": "text", "text": "b"}]), assistant("c"), assistant("d")]
    assert translate(request(messages))["messages"] == [
        {"role": "user", "content": [{"text": "a"}, {"text": "b"}]},
        {"role": "assistant", "content": [{"text": "c"}, {"text": "d"}]},
    ]


def test_empty_text_left_out() -> None:
    """Converse rejects empty text blocks, so empty text and turns are left out."""
    messages = [user([{"type": "text", "text": ""}, {"type": "text", "text": "x"}]), assistant("")]
    assert translate(request(messages))["messages"] == [
        {"role": "user", "content": [{"text": "x"}]}
    ]


@pytest.mark.parametrize(
    ("media_type", "expected"),
    [("image/png", "png"), ("image/jpeg", "jpeg"), ("image/gif", "gif"), ("image/webp", "webp")],
)
def test_image_data_url_becomes_bytes(media_type: str, expected: str) -> None:
    """A base64 data URL becomes an image block with its format and bytes."""
    upstream = translate(request([user([image(f"data:{media_type};base64,{PNG_DATA}")])]))
    assert upstream["messages"][0]["content"] == [
        {"image": {"format": expected, "source": {"bytes": PNG_DATA}}}
    ]


def test_image_http_url_rejected() -> None:
    """An image URL is rejected naming the field, since Converse fetches no URL."""
    body = request([user([{"type": "text", "text": "see"}, image("https://example.com/a.png")])])
    with pytest.raises(InvalidRequestError) as caught:
        translate(body)
    message = caught.value.message
    assert message.startswith("messages[0].content[1].image_url.url: an image URL")
    assert "base64 data URL" in message


def test_image_non_base64_data_url_rejected() -> None:
    """A data URL that is not base64 is rejected naming the field."""
    with pytest.raises(InvalidRequestError, match=r"image_url\.url: a data URL that is not base64"):
        translate(request([user([image("data:image/png,raw")])]))


def test_image_unsupported_type_rejected() -> None:
    """An image type Converse cannot read is rejected with the types it reads."""
    with pytest.raises(InvalidRequestError, match="'image/bmp'.*png, jpeg, gif or webp"):
        translate(request([user([image(f"data:image/bmp;base64,{PNG_DATA}")])]))


def test_file_data_becomes_document() -> None:
    """A file with base64 file_data becomes a document with a valid name."""
    part = {
        "type": "file",
        "file": {"filename": "q3_report.v2.pdf", "file_data": "data:application/pdf;base64,JVBERg=="},
    }
    upstream = translate(request([user([part])]))
    assert upstream["messages"][0]["content"] == [
        {"document": {"format": "pdf", "name": "q3 report v2 pdf", "source": {"bytes": "JVBERg=="}}}
    ]


def test_file_without_name_gets_numbered_name() -> None:
    """A file without a filename is named by its place in the message."""
    part = {"type": "file", "file": {"file_data": "data:text/plain;base64,aGk="}}
    upstream = translate(request([user([{"type": "text", "text": "read"}, part])]))
    assert upstream["messages"][0]["content"][1]["document"]["name"] == "document 2"
    assert upstream["messages"][0]["content"][1]["document"]["format"] == "txt"


def test_file_id_rejected() -> None:
    """A file_id refers to OpenAI storage and is rejected."""
    part = {"type": "file", "file": {"file_id": "file-abc"}}
    with pytest.raises(InvalidRequestError, match=r"messages\[0\]\.content\[0\]\.file: a file without base64"):
        translate(request([user([part])]))


def test_file_unsupported_type_rejected() -> None:
    """A document type Converse cannot read is rejected."""
    part = {"type": "file", "file": {"file_data": "data:application/zip;base64,UEs="}}
    with pytest.raises(InvalidRequestError, match="'application/zip'"):
        translate(request([user([part])]))


def test_input_audio_rejected() -> None:
    """Audio input parts are rejected naming the part."""
    part = {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}
    with pytest.raises(InvalidRequestError, match=r"messages\[0\]\.content\[0\]\.type"):
        translate(request([user([part])]))


def test_function_role_rejected() -> None:
    """Deprecated function messages are rejected."""
    with pytest.raises(InvalidRequestError, match=r"messages\[1\]\.role"):
        translate(request([*HELLO, {"role": "function", "name": "f", "content": "x"}]))


def test_unknown_role_rejected() -> None:
    """An unknown role is rejected with the roles allowed."""
    with pytest.raises(InvalidRequestError, match="got 'narrator'"):
        translate(request([{"role": "narrator", "content": "x"}]))


def test_system_image_rejected() -> None:
    """System messages take text parts only."""
    with pytest.raises(InvalidRequestError, match="in a system message"):
        translate(request([{"role": "system", "content": [image("data:image/png;base64,AA==")]}, *HELLO]))


# -- requests: tools ----------------------------------------------------------

WEATHER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}}


def test_tools_become_tool_specs() -> None:
    """Function tools become toolSpecs with name, description and JSON schema."""
    tools = [
        function_tool("get_weather", description="Weather by city", parameters=WEATHER_SCHEMA, strict=True),
        function_tool("now", description=""),
    ]
    upstream = translate(request(HELLO, tools=tools))
    assert upstream["toolConfig"] == {
        "tools": [
            {
                "toolSpec": {
                    "name": "get_weather",
                    "description": "Weather by city",
                    "inputSchema": {"json": WEATHER_SCHEMA},
                }
            },
            {
                "toolSpec": {
                    "name": "now",
                    "inputSchema": {"json": {"type": "object", "properties": {}}},
                }
            },
        ]
    }


def test_custom_tool_rejected() -> None:
    """Custom (free-form) tools are rejected naming the tool."""
    tools = [{"type": "custom", "custom": {"name": "apply_patch"}}]
    with pytest.raises(InvalidRequestError, match=r"tools\[0\]\.type: a 'custom' tool"):
        translate(request(HELLO, tools=tools))


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        pytest.param("auto", {"auto": {}}, id="auto"),
        pytest.param("required", {"any": {}}, id="required"),
        pytest.param(
            {"type": "function", "function": {"name": "get_weather"}},
            {"tool": {"name": "get_weather"}},
            id="function",
        ),
    ],
)
def test_tool_choice_mapping(choice: Any, expected: dict[str, Any]) -> None:
    """tool_choice auto, required and a function map to Converse's toolChoice."""
    tools = [function_tool("get_weather", parameters=WEATHER_SCHEMA)]
    upstream = translate(request(HELLO, tools=tools, tool_choice=choice))
    assert upstream["toolConfig"]["toolChoice"] == expected


def test_default_tool_choice_omitted() -> None:
    """Without tool_choice, toolConfig has no toolChoice (Converse's default is auto)."""
    upstream = translate(request(HELLO, tools=[function_tool("now")]))
    assert "toolChoice" not in upstream["toolConfig"]


def test_tool_choice_none_leaves_out_tools() -> None:
    """tool_choice none without tool history sends no toolConfig."""
    upstream = translate(request(HELLO, tools=[function_tool("now")], tool_choice="none"))
    assert "toolConfig" not in upstream


def test_choice_none_with_history_keeps_tools() -> None:
    """With tool calls in the messages, Converse requires toolConfig, sent without a choice."""
    messages = [*HELLO, assistant(None, tool_calls=[call("call_1", "now", "{}")]), tool("call_1", "noon")]
    upstream = translate(request(messages, tools=[function_tool("now")], tool_choice="none"))
    assert upstream["toolConfig"] == {
        "tools": [{"toolSpec": {"name": "now", "inputSchema": {"json": {"type": "object", "properties": {}}}}}]
    }


def test_history_without_tools_declares_them() -> None:
    """Tool calls in the messages but no tools: each named tool is declared."""
    messages = [
        *HELLO,
        assistant(None, tool_calls=[call("call_1", "Read", "{}"), call("call_2", "Bash", "{}")]),
        tool("call_1", "a"),
        tool("call_2", "b"),
        assistant(None, tool_calls=[call("call_3", "Read", "{}")]),
        tool("call_3", "c"),
    ]
    upstream = translate(request(messages))
    assert upstream["toolConfig"] == {
        "tools": [
            {"toolSpec": {"name": "Read", "inputSchema": {"json": {"type": "object"}}}},
            {"toolSpec": {"name": "Bash", "inputSchema": {"json": {"type": "object"}}}},
        ]
    }


def test_allowed_tools_choice_rejected() -> None:
    """An allowed_tools choice has no Converse form and is rejected."""
    choice = {"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": []}}
    with pytest.raises(InvalidRequestError, match="tool_choice: the tool choice"):
        translate(request(HELLO, tools=[function_tool("now")], tool_choice=choice))


def test_assistant_tool_calls_become_tool_use() -> None:
    """Assistant tool_calls become toolUse blocks with object input, after the text."""
    messages = [
        *HELLO,
        assistant("Checking.", tool_calls=[call("call_1", "get_weather", '{"city": "Paris"}')]),
    ]
    upstream = translate(request(messages, tools=[function_tool("get_weather")]))
    assert upstream["messages"][1] == {
        "role": "assistant",
        "content": [
            {"text": "Checking."},
            {"toolUse": {"toolUseId": "call_1", "name": "get_weather", "input": {"city": "Paris"}}},
        ],
    }


def test_invalid_arguments_kept_raw() -> None:
    """Arguments that are not a JSON object are kept under _raw."""
    messages = [*HELLO, assistant(None, tool_calls=[call("call_1", "f", '{"a": ')])]
    upstream = translate(request(messages, tools=[function_tool("f")]))
    assert upstream["messages"][1]["content"][0]["toolUse"]["input"] == {"_raw": '{"a": '}


def test_tool_messages_become_one_user_turn() -> None:
    """Tool results and the next user text merge into one user message."""
    messages = [
        *HELLO,
        assistant(None, tool_calls=[call("call_1", "a", "{}"), call("call_2", "b", "{}")]),
        tool("call_1", "one"),
        tool("call_2", [{"type": "text", "text": "two"}]),
        user("thanks"),
    ]
    upstream = translate(request(messages, tools=[function_tool("a"), function_tool("b")]))
    assert upstream["messages"][2] == {
        "role": "user",
        "content": [
            {"toolResult": {"toolUseId": "call_1", "content": [{"text": "one"}]}},
            {"toolResult": {"toolUseId": "call_2", "content": [{"text": "two"}]}},
            {"text": "thanks"},
        ],
    }


def test_empty_tool_result_gets_placeholder() -> None:
    """A tool message without text sends the placeholder, as Converse rejects empty text."""
    messages = [*HELLO, assistant(None, tool_calls=[call("call_1", "a", "{}")]), tool("call_1", "")]
    upstream = translate(request(messages, tools=[function_tool("a")]))
    result = upstream["messages"][2]["content"][0]["toolResult"]
    assert result["content"] == [{"text": EMPTY_TOOL_RESULT}]


def test_tool_ids_mapped_on_both_sides() -> None:
    """Invalid characters become "_" and long ids a hash, the same in calls and results."""
    long_id = "call_" + "x" * 80
    messages = [
        *HELLO,
        assistant(None, tool_calls=[call("call.1:a", "a", "{}"), call(long_id, "a", "{}")]),
        tool("call.1:a", "one"),
        tool(long_id, "two"),
    ]
    upstream = translate(request(messages, tools=[function_tool("a")]))
    uses = [block["toolUse"]["toolUseId"] for block in upstream["messages"][1]["content"]]
    results = [block["toolResult"]["toolUseId"] for block in upstream["messages"][2]["content"]]
    assert uses == ["call_1_a", converse_tool_id(long_id)]
    assert results == uses
    assert len(uses[1]) <= 64
    assert uses[1].startswith("tooluse_")


# -- requests: sampling and other fields --------------------------------------


def test_inference_config_fields() -> None:
    """max_completion_tokens, temperature and stop go to inferenceConfig."""
    upstream = translate(
        request(HELLO, max_completion_tokens=300, max_tokens=100, temperature=0.5, stop=["END", ""])
    )
    assert upstream["inferenceConfig"] == {"maxTokens": 300, "temperature": 0.5, "stopSequences": ["END"]}


def test_max_tokens_alone() -> None:
    """max_tokens is used when max_completion_tokens is absent."""
    assert translate(request(HELLO, max_tokens=64))["inferenceConfig"] == {"maxTokens": 64}


def test_no_inference_config_without_settings() -> None:
    """A request without sampling settings sends no inferenceConfig."""
    assert "inferenceConfig" not in translate(request(HELLO))


def test_invalid_max_tokens_rejected() -> None:
    """A max_tokens below 1 is rejected with its value."""
    with pytest.raises(InvalidRequestError, match="max_tokens must be a positive integer, got 0"):
        translate(request(HELLO, max_tokens=0))


def test_temperature_clamped_to_one() -> None:
    """Temperatures above Converse's maximum of 1 are lowered to 1."""
    assert translate(request(HELLO, temperature=1.7))["inferenceConfig"] == {"temperature": 1.0}


def test_top_p_dropped_with_temperature() -> None:
    """top_p is left out when temperature is set."""
    assert translate(request(HELLO, temperature=0.2, top_p=0.9))["inferenceConfig"] == {"temperature": 0.2}


def test_top_p_alone_kept() -> None:
    """top_p alone becomes topP."""
    assert translate(request(HELLO, top_p=0.9))["inferenceConfig"] == {"topP": 0.9}


def test_stop_string_becomes_list() -> None:
    """A single stop string becomes a one-item stopSequences."""
    assert translate(request(HELLO, stop="\n\n"))["inferenceConfig"] == {"stopSequences": ["\n\n"]}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("n", 2),
        ("functions", [{"name": "f"}]),
        ("function_call", "auto"),
        ("audio", {"voice": "alloy", "format": "wav"}),
        ("modalities", ["text", "audio"]),
        ("web_search_options", {}),
    ],
)
def test_unsupported_field_rejected(field: str, value: Any) -> None:
    """Fields with no Converse counterpart are rejected naming the field."""
    with pytest.raises(InvalidRequestError) as caught:
        translate(request(HELLO, **{field: value}))
    assert caught.value.message.startswith(f"{field}:")
    assert "Bedrock Converse upstream" in caught.value.message


DROPPED = {
    "n": 1,
    "parallel_tool_calls": False,
    "reasoning_effort": "high",
    "stream_options": {"include_usage": True},
    "frequency_penalty": 0.5,
    "presence_penalty": 0.5,
    "logit_bias": {"50256": -100},
    "seed": 7,
    "logprobs": True,
    "top_logprobs": 2,
    "user": "u-1",
    "safety_identifier": "s-1",
    "store": True,
    "metadata": {"a": "b"},
    "service_tier": "auto",
    "prompt_cache_key": "k",
    "prediction": {"type": "content", "content": "x"},
    "verbosity": "low",
}


@pytest.mark.parametrize("field", sorted(DROPPED))
def test_dropped_field_not_sent(field: str) -> None:
    """A dropped field leaves the upstream body unchanged."""
    assert translate(request(HELLO, **{field: DROPPED[field]})) == translate(request(HELLO))


def test_json_schema_becomes_output_config() -> None:
    """response_format json_schema becomes outputConfig.textFormat with the schema as text."""
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "count", "description": "A count", "schema": schema, "strict": True},
    }
    upstream = translate(request(HELLO, response_format=response_format))
    assert upstream["outputConfig"] == {
        "textFormat": {
            "type": "json_schema",
            "structure": {
                "jsonSchema": {
                    "schema": '{"type":"object","properties":{"n":{"type":"integer"}}}',
                    "name": "count",
                    "description": "A count",
                }
            },
        }
    }


def test_json_object_format_rejected() -> None:
    """json_object mode is rejected, pointing to json_schema."""
    with pytest.raises(InvalidRequestError, match="response_format json_schema"):
        translate(request(HELLO, response_format={"type": "json_object"}))


def test_text_format_ignored() -> None:
    """response_format text sends no outputConfig."""
    assert "outputConfig" not in translate(request(HELLO, response_format={"type": "text"}))


def test_field_rules_name_each_choice() -> None:
    """The pair's rules document tool_choice none, the URL rejection and top_p."""
    rules = {rule.field: rule for rule in FIELD_RULES[("openai_chat", "bedrock_converse")]}
    assert rules["tool_choice none"].action == "changed"
    assert rules["messages[].content[] image_url with an http or https URL"].action == "rejected"
    assert rules["top_p when temperature is also set"].action == "dropped"


# -- responses ----------------------------------------------------------------


def response_for(document: dict[str, Any]) -> dict[str, Any]:
    chat = translation()
    chat.request(request(HELLO), model=MODEL)
    return chat.response(document)


def test_response_from_recorded_cache_read() -> None:
    """The recorded cache-read response becomes an exact chat.completion."""
    assert response_for(fixture_json("bedrock/converse_cache_read")) == {
        "id": COMPLETION_ID,
        "object": "chat.completion",
        "created": NOW,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "21", "refusal": None},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": 1324,
            "completion_tokens": 5,
            "total_tokens": 1329,
            "prompt_tokens_details": {"cached_tokens": 1322},
        },
    }


def test_response_usage_counts_cache_writes() -> None:
    """Cache writes count in prompt_tokens but not in cached_tokens."""
    meta = fixture_meta("bedrock/converse_cache_write")["usage"]
    usage = response_for(fixture_json("bedrock/converse_cache_write"))["usage"]
    assert usage["prompt_tokens"] == meta["input_tokens"] + meta["cache_write_tokens"]
    assert usage["prompt_tokens"] == 1324
    assert usage["prompt_tokens_details"] == {"cached_tokens": 0}
    assert usage["completion_tokens"] == 5


TOOL_RESPONSE = {
    "output": {
        "message": {
            "role": "assistant",
            "content": [
                {"reasoningContent": {"reasoningText": {"text": "Need weather.", "signature": "sig"}}},
                {"text": "Let me check."},
                {"toolUse": {"toolUseId": "tooluse_abc", "name": "get_weather", "input": {"city": "Paris"}}},
                {"toolUse": {"toolUseId": "tooluse_def", "name": "now", "input": {}}},
            ],
        }
    },
    "stopReason": "tool_use",
    "usage": {"inputTokens": 40, "outputTokens": 12, "totalTokens": 52},
}


def test_response_tool_use_becomes_tool_calls() -> None:
    """toolUse blocks become tool_calls with JSON-string arguments."""
    message = response_for(TOOL_RESPONSE)["choices"][0]["message"]
    assert message["content"] == "Let me check."
    assert message["tool_calls"] == [
        {"id": "tooluse_abc", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
        {"id": "tooluse_def", "type": "function", "function": {"name": "now", "arguments": "{}"}},
    ]


def test_response_reasoning_content() -> None:
    """Reasoning text becomes reasoning_content, without its signature."""
    completion = response_for(TOOL_RESPONSE)
    assert completion["choices"][0]["message"]["reasoning_content"] == "Need weather."
    assert "sig" not in json.dumps(completion)


def test_tool_calls_only_have_null_content() -> None:
    """A response of tool calls only has content null, as OpenAI sends it."""
    document = json.loads(json.dumps(TOOL_RESPONSE))
    document["output"]["message"]["content"] = document["output"]["message"]["content"][2:]
    completion = response_for(document)
    assert completion["choices"][0]["message"]["content"] is None
    assert completion["choices"][0]["finish_reason"] == "tool_calls"
    assert "reasoning_content" not in completion["choices"][0]["message"]


@pytest.mark.parametrize(
    ("stop_reason", "expected"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("tool_use", "tool_calls"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("guardrail_intervened", "content_filter"),
        ("content_filtered", "content_filter"),
        ("malformed_model_output", "stop"),
    ],
)
def test_stop_reason_mapping(stop_reason: str, expected: str) -> None:
    """Each Converse stopReason maps to a chat finish_reason."""
    document = {**fixture_json("bedrock/converse_cache_read"), "stopReason": stop_reason}
    assert response_for(document)["choices"][0]["finish_reason"] == expected


# -- errors -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "invalid_request_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (429, "rate_limit_exceeded"),
        (500, "server_error"),
        (503, "server_error"),
    ],
)
def test_bedrock_error_becomes_openai_error(status: int, kind: str) -> None:
    """A Bedrock {"message"} body becomes an OpenAI error with the status's type."""
    document = {"message": "Too many requests, please wait before trying again."}
    assert translation().error(status, document) == {
        "error": {
            "message": "Too many requests, please wait before trying again.",
            "type": kind,
            "param": None,
            "code": None,
        }
    }


def test_capitalized_message_read() -> None:
    """AWS's {"Message"} form of an error body is read too."""
    document = {"Message": "The security token included in the request is invalid."}
    error = translation().error(403, document)["error"]
    assert error["message"] == "The security token included in the request is invalid."
    assert error["type"] == "permission_error"


def test_text_error_kept() -> None:
    """A plain-text error body becomes the message."""
    error = translation().error(502, "upstream connect error\n")["error"]
    assert error["message"] == "upstream connect error"
    assert error["type"] == "server_error"


# -- streams ------------------------------------------------------------------

RECORDED_STREAM = "bedrock/converse_stream"


def frame(event_type: str, payload: dict[str, Any]) -> bytes:
    return encode_event_stream(event_type, json.dumps(payload).encode())


def exception_frame(exception_type: str, payload: dict[str, Any]) -> bytes:
    """Encode an event stream exception message, as Bedrock sends one mid-stream."""
    headers = b""
    for name, value in (
        (":exception-type", exception_type),
        (":content-type", "application/json"),
        (":message-type", "exception"),
    ):
        encoded = value.encode()
        headers += bytes([len(name)]) + name.encode() + b"\x07"
        headers += struct.pack(">H", len(encoded)) + encoded
    body = json.dumps(payload).encode()
    prelude = struct.pack(">II", 12 + len(headers) + len(body) + 4, len(headers))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    message = prelude + headers + body
    return message + struct.pack(">I", zlib.crc32(message))


def stream_for(*, include_usage: bool) -> Any:
    """Return a stream translator for a request with or without include_usage."""
    chat = translation()
    options = {"stream_options": {"include_usage": True}} if include_usage else {}
    chat.request(request(HELLO, stream=True, **options), model=MODEL)
    return chat.stream()


def translate_frames(translator: Any, body: bytes, *, finish: bool = True) -> bytes:
    """Decode an event stream body whole, feed every event, and return the client bytes."""
    out = bytearray()
    for event, _ in EventStreamFramer().feed_blocks(body):
        if event is not None:
            out += translator.feed(event)
    return bytes(out + translator.finish()) if finish else bytes(out)


def translate_frames_bytewise(translator: Any, body: bytes) -> bytes:
    """Feed an event stream body to the framer one byte at a time."""
    framer = EventStreamFramer()
    out = bytearray()
    for offset in range(len(body)):
        for event, _ in framer.feed_blocks(body[offset : offset + 1]):
            if event is not None:
                out += translator.feed(event)
    return bytes(out + translator.finish())


def recorded_text() -> str:
    events = fixture_meta(RECORDED_STREAM)["events"]
    return "".join(payload["delta"]["text"] for kind, payload in events if kind == "contentBlockDelta")


def test_recorded_stream_becomes_chunks() -> None:
    """The recorded ConverseStream becomes valid chunks with its text and finish_reason."""
    body = translate_frames(stream_for(include_usage=True), fixture_body(RECORDED_STREAM))
    chunks = validate_chat_stream(body)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chat_text(chunks) == recorded_text()
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert body.endswith(b"data: [DONE]\n\n")


def test_recorded_stream_usage_chunk_exact() -> None:
    """With include_usage the last chunk carries the metadata event's usage."""
    body = translate_frames(stream_for(include_usage=True), fixture_body(RECORDED_STREAM))
    usage_chunk = validate_chat_stream(body)[-1]
    meta = fixture_meta(RECORDED_STREAM)["usage"]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"] == {
        "prompt_tokens": meta["input_tokens"],
        "completion_tokens": meta["output_tokens"],
        "total_tokens": 95,
        "prompt_tokens_details": {"cached_tokens": 0},
    }


def test_no_usage_chunk_without_include_usage() -> None:
    """Without include_usage no chunk carries usage."""
    body = translate_frames(stream_for(include_usage=False), fixture_body(RECORDED_STREAM))
    chunks = validate_chat_stream(body)
    assert all(chunk["choices"] for chunk in chunks)
    assert all("usage" not in chunk for chunk in chunks)


def test_bytewise_framing_gives_same_chunks() -> None:
    """Feeding the framer one byte at a time gives the same client bytes."""
    body = fixture_body(RECORDED_STREAM)
    whole = translate_frames(stream_for(include_usage=True), body)
    assert translate_frames_bytewise(stream_for(include_usage=True), body) == whole


def test_every_prefix_is_valid() -> None:
    """After every event fed, the chunks so far obey the stream rules."""
    translator = stream_for(include_usage=True)
    stream = b""
    for event, _ in EventStreamFramer().feed_blocks(fixture_body(RECORDED_STREAM)):
        stream += translator.feed(event)
        validate_chat_stream(stream, complete=False)
    validate_chat_stream(stream)
    assert translator.finish() == b""


def test_stream_ends_at_metadata() -> None:
    """messageStop gives the finish_reason chunk, and only metadata ends the stream."""
    translator = stream_for(include_usage=True)
    outputs = {}
    for event, _ in EventStreamFramer().feed_blocks(fixture_body(RECORDED_STREAM)):
        outputs[event.event] = translator.feed(event)
    assert b'"finish_reason":"stop"' in outputs["messageStop"]
    assert b"[DONE]" not in outputs["messageStop"]
    assert outputs["metadata"].endswith(b"data: [DONE]\n\n")
    assert b'"prompt_tokens":13' in outputs["metadata"]


def test_chunks_share_id_model_and_created() -> None:
    """Every chunk has the translation's id, the request's model and the clock's time."""
    chunks = validate_chat_stream(
        translate_frames(stream_for(include_usage=True), fixture_body(RECORDED_STREAM))
    )
    assert {chunk["id"] for chunk in chunks} == {COMPLETION_ID}
    assert {chunk["model"] for chunk in chunks} == {MODEL}
    assert {chunk["created"] for chunk in chunks} == {NOW}


TOOL_EVENTS = [
    ("messageStart", {"role": "assistant"}),
    ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "Think."}}}),
    ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"signature": "sig"}}}),
    ("contentBlockStop", {"contentBlockIndex": 0}),
    ("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"text": "Checking."}}),
    ("contentBlockStop", {"contentBlockIndex": 1}),
    (
        "contentBlockStart",
        {"contentBlockIndex": 2, "start": {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather"}}},
    ),
    ("contentBlockDelta", {"contentBlockIndex": 2, "delta": {"toolUse": {"input": '{"city":'}}}),
    ("contentBlockDelta", {"contentBlockIndex": 2, "delta": {"toolUse": {"input": ' "Paris"}'}}}),
    ("contentBlockStop", {"contentBlockIndex": 2}),
    (
        "contentBlockStart",
        {"contentBlockIndex": 3, "start": {"toolUse": {"toolUseId": "tooluse_2", "name": "now"}}},
    ),
    ("contentBlockDelta", {"contentBlockIndex": 3, "delta": {"toolUse": {"input": "{}"}}}),
    ("contentBlockStop", {"contentBlockIndex": 3}),
    ("messageStop", {"stopReason": "tool_use"}),
    (
        "metadata",
        {
            "usage": {
                "inputTokens": 30,
                "outputTokens": 20,
                "totalTokens": 250,
                "cacheReadInputTokens": 150,
                "cacheWriteInputTokens": 50,
            },
            "metrics": {"latencyMs": 100},
        },
    ),
]
"""A ConverseStream with reasoning, text and two tool uses, built by hand in
ConverseStream's event shapes, since no recorded stream with tool use is stored."""


def tool_stream() -> bytes:
    return b"".join(frame(kind, payload) for kind, payload in TOOL_EVENTS)


def test_tool_stream_becomes_tool_calls() -> None:
    """Tool use blocks become two tool calls with joined arguments and finish tool_calls."""
    chunks = validate_chat_stream(translate_frames(stream_for(include_usage=True), tool_stream()))
    assert chat_text(chunks) == "Checking."
    assert chat_tool_calls(chunks) == [
        {"id": "tooluse_1", "name": "get_weather", "arguments": '{"city": "Paris"}'},
        {"id": "tooluse_2", "name": "now", "arguments": "{}"},
    ]
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"


def test_tool_stream_usage_counts_cache() -> None:
    """Streamed usage adds cache reads and writes to prompt_tokens."""
    chunks = validate_chat_stream(translate_frames(stream_for(include_usage=True), tool_stream()))
    assert chunks[-1]["usage"] == {
        "prompt_tokens": 230,
        "completion_tokens": 20,
        "total_tokens": 250,
        "prompt_tokens_details": {"cached_tokens": 150},
    }


def test_stream_reasoning_content() -> None:
    """Reasoning text becomes reasoning_content deltas, and signatures are dropped."""
    body = translate_frames(stream_for(include_usage=False), tool_stream())
    chunks = validate_chat_stream(body)
    reasoning = [c["choices"][0]["delta"].get("reasoning_content") for c in chunks]
    assert [text for text in reasoning if text] == ["Think."]
    assert b"sig" not in body


def test_tool_input_without_start_dropped() -> None:
    """Tool input for a block that no contentBlockStart named is dropped and counted."""
    translator = stream_for(include_usage=False)
    body = frame("messageStart", {"role": "assistant"})
    body += frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"toolUse": {"input": "{}"}}})
    body += frame("messageStop", {"stopReason": "end_turn"})
    body += frame("metadata", {"usage": {"inputTokens": 1, "outputTokens": 1}})
    chunks = validate_chat_stream(translate_frames(translator, body))
    assert chat_tool_calls(chunks) == []
    assert translator.dropped_fragments == 1


def recorded_until(event_type: str) -> bytes:
    """Return the recorded stream's frames before the first of `event_type`."""
    out = bytearray()
    for kind, payload in fixture_meta(RECORDED_STREAM)["events"]:
        if kind == event_type:
            break
        out += encode_event_stream(kind, json.dumps(payload, separators=(",", ":")).encode())
    return bytes(out)


def test_recorded_frames_rebuild_the_body() -> None:
    """The fixture's events, encoded, give back its body, so recorded_until cuts real frames."""
    events = fixture_meta(RECORDED_STREAM)["events"]
    rebuilt = b"".join(
        encode_event_stream(kind, json.dumps(payload, separators=(",", ":")).encode())
        for kind, payload in events
    )
    assert rebuilt == fixture_body(RECORDED_STREAM)


def test_exception_event_becomes_error_chunk() -> None:
    """A throttlingException mid-stream becomes a last error chunk, no [DONE]."""
    body = recorded_until("contentBlockStop")
    body += exception_frame("throttlingException", {"message": "Too many tokens, please wait."})
    out = translate_frames(stream_for(include_usage=True), body)
    chunks = validate_chat_stream(out)
    assert chunks[-1] == {
        "error": {
            "message": "Too many tokens, please wait.",
            "type": "rate_limit_exceeded",
            "param": None,
            "code": "throttlingException",
        }
    }
    assert b"[DONE]" not in out


def test_unknown_exception_is_server_error() -> None:
    """An exception without a known type is a server_error keeping its name as code."""
    body = frame("messageStart", {"role": "assistant"})
    body += exception_frame("modelStreamErrorException", {"message": "Model failed."})
    error = validate_chat_stream(translate_frames(stream_for(include_usage=False), body))[-1]["error"]
    assert error["type"] == "server_error"
    assert error["code"] == "modelStreamErrorException"
    assert error["message"] == "Model failed."


def test_finish_with_error_gives_error_chunk() -> None:
    """finish(error=...) after a cut gives an error chunk with that message."""
    translator = stream_for(include_usage=False)
    body = translate_frames(translator, recorded_until("messageStop"), finish=False)
    body += translator.finish(error="upstream reset the connection")
    error = validate_chat_stream(body)[-1]["error"]
    assert error["message"] == "upstream reset the connection"
    assert error["type"] == "server_error"


def test_cut_before_message_stop_is_error() -> None:
    """A stream cut before messageStop ends with an error chunk."""
    body = translate_frames(stream_for(include_usage=True), recorded_until("messageStop"))
    assert validate_chat_stream(body)[-1]["error"]["message"] == INCOMPLETE_MESSAGE


def test_cut_before_metadata_closes_without_usage() -> None:
    """A stream cut after messageStop ends with [DONE] but no usage chunk."""
    body = translate_frames(stream_for(include_usage=True), recorded_until("metadata"))
    chunks = validate_chat_stream(body)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert body.endswith(b"data: [DONE]\n\n")


def test_nothing_after_the_end() -> None:
    """finish and later events after metadata produce nothing."""
    translator = stream_for(include_usage=False)
    translate_frames(translator, fixture_body(RECORDED_STREAM), finish=False)
    assert translator.finish() == b""
    late = frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "late"}})
    (event, _), = EventStreamFramer().feed_blocks(late)
    assert translator.feed(event) == b""


def test_stream_without_request_has_empty_model() -> None:
    """A translation whose request() never ran still streams, with an empty model."""
    chunks = validate_chat_stream(translate_frames(translation().stream(), fixture_body(RECORDED_STREAM)))
    assert {chunk["model"] for chunk in chunks} == {""}
    assert chat_text(chunks) == recorded_text()
