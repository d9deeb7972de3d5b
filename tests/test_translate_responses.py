"""OpenAI Responses clients on OpenAI Chat Completions upstreams."""

from __future__ import annotations

import json
from typing import Any

import pytest

from lynkr_extproc.errors import InvalidRequestError
from lynkr_extproc.translate.chat_to_anthropic import ChatToAnthropic
from lynkr_extproc.translate.responses_to_chat import ResponsesToChat
from lynkr_extproc.translate._chat_calls import INCOMPLETE_MESSAGE
from tests.test_translate_common import (
    CHAT_USAGE,
    chat_chunk,
    chat_text_and_tool_stream,
    fixture_body,
    fixture_json,
    fixture_meta,
    responses_items,
    sse,
    tool_fragment,
    translate_checking_prefixes,
    translate_stream,
    translate_stream_bytewise,
    validate_responses_stream,
)

MODEL = "qwen3:8b"


def translate(body: dict[str, Any], *, model: str = MODEL) -> dict[str, Any]:
    return ResponsesToChat().request(body, model=model)


def request(items: Any, **fields: Any) -> dict[str, Any]:
    return {"model": "gpt-5-codex", "input": items, **fields}


def message(role: str, *parts: dict[str, Any]) -> dict[str, Any]:
    return {"type": "message", "role": role, "content": list(parts)}


def input_text(text: str) -> dict[str, Any]:
    return {"type": "input_text", "text": text}


def function_call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {
        "type": "function_call",
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
    }


def call_output(call_id: str, output: Any) -> dict[str, Any]:
    return {"type": "function_call_output", "call_id": call_id, "output": output}


SHELL = {
    "type": "function",
    "name": "shell",
    "description": "Runs a shell command",
    "strict": False,
    "parameters": {
        "type": "object",
        "properties": {"command": {"type": "array", "items": {"type": "string"}}},
        "required": ["command"],
    },
}
APPLY_PATCH = {
    "type": "custom",
    "name": "apply_patch",
    "description": "Edit files with a patch",
    "format": {"type": "grammar", "syntax": "lark", "definition": "start: patch"},
}


# -- requests -----------------------------------------------------------------


def test_input_string_becomes_user_message() -> None:
    """A string input becomes one user message."""
    upstream = translate(request("What's the weather like in SF?"))
    assert upstream["model"] == MODEL
    assert upstream["messages"] == [
        {"role": "user", "content": "What's the weather like in SF?"}
    ]


def test_instructions_become_first_system_message() -> None:
    """instructions become the first message, role system."""
    upstream = translate(request("hi", instructions="You are Codex."))
    assert upstream["messages"][0] == {"role": "system", "content": "You are Codex."}


def test_developer_message_becomes_system() -> None:
    """A developer message becomes a system message, which every chat server accepts."""
    upstream = translate(
        request([message("developer", input_text("Sandbox: read-only."))])
    )
    assert upstream["messages"] == [
        {"role": "system", "content": "Sandbox: read-only."}
    ]


def test_user_text_parts_join() -> None:
    """A user message's text parts join into one string."""
    item = message(
        "user", input_text("<environment_context/>"), input_text("Fix the bug")
    )
    assert (
        translate(request([item]))["messages"][0]["content"]
        == "<environment_context/>\nFix the bug"
    )


def test_input_image_becomes_image_url() -> None:
    """input_image becomes an image_url part, keeping detail."""
    image = {
        "type": "input_image",
        "image_url": "data:image/png;base64,AA",
        "detail": "high",
    }
    parts = translate(request([message("user", input_text("what?"), image)]))[
        "messages"
    ][0]["content"]
    assert parts == [
        {"type": "text", "text": "what?"},
        {
            "type": "image_url",
            "image_url": {"url": "data:image/png;base64,AA", "detail": "high"},
        },
    ]


def test_input_image_file_id_rejected() -> None:
    """An input_image that refers to a file_id is rejected."""
    image = {"type": "input_image", "file_id": "file-1"}
    with pytest.raises(InvalidRequestError, match=r"input\[0\]\.content\[0\]"):
        translate(request([message("user", image)]))


def test_input_file_rejected() -> None:
    """An input_file part is rejected, naming its type."""
    part = {"type": "input_file", "file_data": "data:application/pdf;base64,JVBE"}
    with pytest.raises(InvalidRequestError, match="input_file"):
        translate(request([message("user", part)]))


def test_assistant_output_text_becomes_assistant_message() -> None:
    """An assistant message item in history becomes an assistant message."""
    item = message(
        "assistant", {"type": "output_text", "text": "Done.", "annotations": []}
    )
    messages = translate(request([message("user", input_text("go")), item]))["messages"]
    assert messages[1] == {"role": "assistant", "content": "Done."}


def test_function_calls_become_tool_calls() -> None:
    """Consecutive function_call items become one assistant message's tool calls."""
    items = [
        message("user", input_text("list")),
        function_call("call_1", "shell", '{"command":["ls"]}'),
        function_call("call_2", "shell", '{"command":["pwd"]}'),
    ]
    assistant = translate(request(items))["messages"][1]
    assert assistant["role"] == "assistant"
    assert assistant["content"] is None
    assert assistant["tool_calls"] == [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "shell", "arguments": '{"command":["ls"]}'},
        },
        {
            "id": "call_2",
            "type": "function",
            "function": {"name": "shell", "arguments": '{"command":["pwd"]}'},
        },
    ]


def test_function_call_joins_preceding_assistant_text() -> None:
    """A function_call right after assistant text joins that message."""
    items = [
        message("user", input_text("list")),
        message("assistant", {"type": "output_text", "text": "Listing."}),
        function_call("call_1", "shell", "{}"),
    ]
    messages = translate(request(items))["messages"]
    assert len(messages) == 2
    assert messages[1]["content"] == "Listing."
    assert messages[1]["tool_calls"][0]["id"] == "call_1"


def test_function_call_output_becomes_tool_message() -> None:
    """function_call_output becomes a tool message for its call."""
    items = [function_call("call_1", "shell", "{}"), call_output("call_1", "file.txt")]
    messages = translate(request(items))["messages"]
    assert messages[1] == {
        "role": "tool",
        "tool_call_id": "call_1",
        "content": "file.txt",
    }


def test_output_image_moves_after_tool_messages() -> None:
    """Images in tool outputs go to a user message after all tool messages."""
    image = {"type": "input_image", "image_url": "https://x.test/s.png"}
    items = [
        function_call("call_1", "shot", "{}"),
        function_call("call_2", "shell", "{}"),
        call_output("call_1", [input_text("screenshot"), image]),
        call_output("call_2", "ok"),
        message("user", input_text("next")),
    ]
    messages = translate(request(items))["messages"]
    assert [entry["role"] for entry in messages] == [
        "assistant",
        "tool",
        "tool",
        "user",
        "user",
    ]
    assert messages[1]["content"] == "screenshot"
    assert messages[3]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": "https://x.test/s.png"},
    }


def test_reasoning_items_dropped() -> None:
    """Reasoning items, whose content only OpenAI can read, are left out."""
    items = [
        message("user", input_text("go")),
        {
            "type": "reasoning",
            "id": "rs_1",
            "summary": [],
            "encrypted_content": "gAAAA",
        },
        function_call("call_1", "shell", "{}"),
    ]
    assert [entry["role"] for entry in translate(request(items))["messages"]] == [
        "user",
        "assistant",
    ]


@pytest.mark.parametrize(
    "item",
    [
        pytest.param({"type": "item_reference", "id": "msg_1"}, id="item_reference"),
        pytest.param(
            {"type": "local_shell_call", "call_id": "c", "action": {}},
            id="local_shell_call",
        ),
        pytest.param({"type": "web_search_call", "id": "ws_1"}, id="web_search_call"),
    ],
)
def test_unsupported_items_rejected(item: dict[str, Any]) -> None:
    """Items of OpenAI state or hosted tools are rejected, naming the item."""
    with pytest.raises(InvalidRequestError, match=r"input\[0\]\.type"):
        translate(request([item]))


def test_function_tool_becomes_chat_tool() -> None:
    """A function tool becomes a chat function tool with its strict flag."""
    assert translate(request("hi", tools=[SHELL]))["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "shell",
                "description": "Runs a shell command",
                "parameters": SHELL["parameters"],
                "strict": False,
            },
        }
    ]


def test_custom_tool_becomes_string_function() -> None:
    """A custom tool becomes a function with one string parameter, no grammar."""
    (function,) = translate(request("hi", tools=[APPLY_PATCH]))["tools"]
    assert function["function"]["name"] == "apply_patch"
    assert function["function"]["parameters"] == {
        "type": "object",
        "properties": {"input": {"type": "string"}},
        "required": ["input"],
    }
    assert "lark" not in json.dumps(function)


def test_custom_tool_call_history_round_trips() -> None:
    """custom_tool_call and its output become a tool call and a tool message."""
    items = [
        {
            "type": "custom_tool_call",
            "call_id": "call_p",
            "name": "apply_patch",
            "input": "*** Begin Patch",
        },
        {"type": "custom_tool_call_output", "call_id": "call_p", "output": "Done!"},
    ]
    messages = translate(request(items, tools=[APPLY_PATCH]))["messages"]
    assert json.loads(messages[0]["tool_calls"][0]["function"]["arguments"]) == {
        "input": "*** Begin Patch"
    }
    assert messages[1] == {"role": "tool", "tool_call_id": "call_p", "content": "Done!"}


@pytest.mark.parametrize(
    "tool",
    [
        {"type": "web_search"},
        {"type": "file_search", "vector_store_ids": ["vs_1"]},
        {"type": "local_shell"},
        {"type": "code_interpreter", "container": {"type": "auto"}},
        {"type": "mcp", "server_label": "x", "server_url": "https://mcp.test"},
    ],
    ids=lambda tool: tool["type"],
)
def test_hosted_tools_rejected(tool: dict[str, Any]) -> None:
    """Hosted tools are rejected, naming the tool's type."""
    with pytest.raises(
        InvalidRequestError, match=rf"tools\[0\]\.type.*'{tool['type']}'"
    ):
        translate(request("hi", tools=[tool]))


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", "auto"),
        ("none", "none"),
        ("required", "required"),
        (
            {"type": "function", "name": "shell"},
            {"type": "function", "function": {"name": "shell"}},
        ),
        (
            {"type": "custom", "name": "apply_patch"},
            {"type": "function", "function": {"name": "apply_patch"}},
        ),
    ],
)
def test_tool_choice_mapping(choice: Any, expected: Any) -> None:
    """Each Responses tool_choice maps to its chat form."""
    upstream = translate(request("hi", tools=[SHELL, APPLY_PATCH], tool_choice=choice))
    assert upstream["tool_choice"] == expected


def test_hosted_tool_choice_rejected() -> None:
    """Forcing a hosted tool is rejected."""
    with pytest.raises(InvalidRequestError, match="tool_choice"):
        translate(request("hi", tools=[SHELL], tool_choice={"type": "web_search"}))


def test_parallel_tool_calls_passed() -> None:
    """parallel_tool_calls is passed with the tools."""
    assert (
        translate(request("hi", tools=[SHELL], parallel_tool_calls=False))[
            "parallel_tool_calls"
        ]
        is False
    )


def test_max_output_tokens_becomes_max_tokens() -> None:
    """max_output_tokens becomes max_tokens."""
    assert translate(request("hi", max_output_tokens=20))["max_tokens"] == 20


def test_sampling_fields_copied() -> None:
    """temperature and top_p are copied."""
    upstream = translate(request("hi", temperature=0.5, top_p=1.0))
    assert upstream["temperature"] == 0.5
    assert upstream["top_p"] == 1.0


def test_reasoning_effort_for_reasoning_model() -> None:
    """reasoning.effort becomes reasoning_effort for a model that takes it."""
    body = request("hi", reasoning={"effort": "low", "summary": "auto"})
    assert translate(body, model="gpt-oss:20b")["reasoning_effort"] == "low"


def test_reasoning_dropped_for_other_model() -> None:
    """reasoning is dropped for a model that would reject reasoning_effort."""
    body = request("hi", reasoning={"effort": "low", "summary": "auto"})
    assert "reasoning_effort" not in translate(body, model="llama3.1:8b")


def test_json_schema_format_becomes_response_format() -> None:
    """text.format json_schema becomes response_format json_schema."""
    schema = {"type": "object", "properties": {}}
    text = {
        "format": {
            "type": "json_schema",
            "name": "out",
            "schema": schema,
            "strict": True,
        }
    }
    assert translate(request("hi", text=text))["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "out", "schema": schema, "strict": True},
    }


def test_json_object_format_passed() -> None:
    """text.format json_object becomes response_format json_object."""
    upstream = translate(
        request("hi", text={"format": {"type": "json_object"}, "verbosity": "low"})
    )
    assert upstream["response_format"] == {"type": "json_object"}


def test_stream_sets_include_usage() -> None:
    """A streamed request requests usage from the chat upstream."""
    upstream = translate(request("hi", stream=True))
    assert upstream["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("previous_response_id", "resp_1"),
        ("conversation", "conv_1"),
        ("background", True),
        ("prompt", {"id": "pmpt_1"}),
    ],
)
def test_server_state_fields_rejected(field: str, value: Any) -> None:
    """Fields that need OpenAI's stored state are rejected, naming the field."""
    with pytest.raises(InvalidRequestError, match=field):
        translate(request("hi", **{field: value}))


DROPPED = {
    "include": ["reasoning.encrypted_content"],
    "store": False,
    "prompt_cache_key": "019a-session",
    "service_tier": "auto",
    "metadata": {"k": "v"},
    "truncation": "auto",
    "max_tool_calls": 3,
    "top_logprobs": 2,
    "stream_options": {"include_obfuscation": False},
    "background": False,
    "previous_response_id": None,
}


@pytest.mark.parametrize("field", sorted(DROPPED))
def test_dropped_field_not_sent(field: str) -> None:
    """A field without a chat counterpart changes nothing upstream."""
    assert translate(request("hi", **{field: DROPPED[field]})) == translate(
        request("hi")
    )


@pytest.mark.parametrize(
    "name",
    [
        "openai/responses",
        "openai/responses_stream",
        "openai/responses_stream_reasoning",
    ],
)
def test_recorded_requests_translate(name: str) -> None:
    """The recorded Responses requests translate into chat requests."""
    upstream = translate(fixture_meta(name)["request"])
    assert upstream["messages"][-1]["role"] == "user"


CODEX_TURN = {
    "model": "gpt-5-codex",
    "instructions": "You are Codex, a coding agent.",
    "input": [
        message("developer", input_text("<permissions>workspace-write</permissions>")),
        message(
            "user", input_text("<environment_context>cwd=/repo</environment_context>")
        ),
        message("user", input_text("Run the tests")),
        {
            "type": "reasoning",
            "id": "rs_1",
            "summary": [],
            "encrypted_content": "gAAAA",
        },
        function_call("call_1", "shell", '{"command":["pytest","-q"]}'),
        call_output("call_1", "3 passed"),
    ],
    "tools": [SHELL, APPLY_PATCH],
    "tool_choice": "auto",
    "parallel_tool_calls": False,
    "reasoning": {"effort": "medium", "summary": "auto"},
    "store": False,
    "stream": True,
    "include": ["reasoning.encrypted_content"],
    "prompt_cache_key": "019a0000-session",
}


def test_codex_turn_translates() -> None:
    """A Codex-shaped turn becomes a chat request with its roles in order."""
    upstream = translate(CODEX_TURN)
    roles = [entry["role"] for entry in upstream["messages"]]
    assert roles == ["system", "system", "user", "user", "assistant", "tool"]
    assert upstream["messages"][5] == {
        "role": "tool",
        "tool_call_id": "call_1",
        "content": "3 passed",
    }
    assert [tool["function"]["name"] for tool in upstream["tools"]] == [
        "shell",
        "apply_patch",
    ]
    assert upstream["parallel_tool_calls"] is False
    assert "reasoning_effort" not in upstream


# -- responses ----------------------------------------------------------------


def translated_response(
    document: dict[str, Any], body: dict[str, Any] | None = None
) -> dict[str, Any]:
    translation = ResponsesToChat()
    translation.request(body or request("hi"), model=MODEL)
    return translation.response(document)


def test_response_text_from_recorded_completion() -> None:
    """The recorded completion becomes one completed message item."""
    document = fixture_json("openai/chat_completion")
    response = translated_response(document)
    assert response["object"] == "response"
    assert response["status"] == "completed"
    assert response["created_at"] == 1755133833
    assert response["model"] == "gpt-5-nano-2025-08-07"
    (item,) = response["output"]
    assert item["type"] == "message"
    assert item["role"] == "assistant"
    assert item["status"] == "completed"
    assert item["content"][0]["type"] == "output_text"
    assert item["content"][0]["text"] == document["choices"][0]["message"]["content"]


def test_response_usage_exact_from_recorded_completion() -> None:
    """Usage keeps prompt and completion counts with their details."""
    usage = translated_response(fixture_json("openai/chat_completion"))["usage"]
    assert usage == {
        "input_tokens": 8,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": 377,
        "output_tokens_details": {"reasoning_tokens": 320},
        "total_tokens": 385,
    }


def test_response_cached_tokens_kept() -> None:
    """Cached tokens stay inside input_tokens, as both APIs count them."""
    document = dict(fixture_json("openai/chat_completion"), usage=CHAT_USAGE)
    usage = translated_response(document)["usage"]
    assert usage["input_tokens"] == 120
    assert usage["input_tokens_details"] == {"cached_tokens": 100}
    assert usage["output_tokens_details"] == {"reasoning_tokens": 7}


def test_response_id_derived() -> None:
    """The response id is resp_ plus a hash of the upstream id."""
    document = fixture_json("openai/chat_completion")
    first = translated_response(document)["id"]
    assert first.startswith("resp_")
    assert first == translated_response(document)["id"]


def test_response_function_call_from_recorded_completion() -> None:
    """The recorded tool call becomes a function_call item."""
    (item,) = translated_response(fixture_json("openai/chat_completion_tool_call"))[
        "output"
    ]
    assert item["type"] == "function_call"
    assert item["call_id"] == "call_8fxy20OEu9ulvvaa5b5CzVA4"
    assert item["name"] == "get_current_weather"
    assert item["arguments"] == '{"location":"Boston, MA","unit":"fahrenheit"}'
    assert item["status"] == "completed"
    assert item["id"].startswith("fc_")


def test_response_custom_tool_call() -> None:
    """A call of a custom tool becomes a custom_tool_call with its free-form input."""
    document = fixture_json("openai/chat_completion_tool_call")
    function = document["choices"][0]["message"]["tool_calls"][0]["function"]
    function["name"] = "apply_patch"
    function["arguments"] = json.dumps({"input": "*** Begin Patch\n*** End Patch"})
    (item,) = translated_response(document, request("hi", tools=[APPLY_PATCH]))[
        "output"
    ]
    assert item["type"] == "custom_tool_call"
    assert item["input"] == "*** Begin Patch\n*** End Patch"
    assert item["call_id"] == "call_8fxy20OEu9ulvvaa5b5CzVA4"


def test_response_length_is_incomplete() -> None:
    """finish_reason length gives status incomplete, reason max_output_tokens."""
    document = fixture_json("openai/chat_completion")
    document["choices"][0]["finish_reason"] = "length"
    response = translated_response(document)
    assert response["status"] == "incomplete"
    assert response["incomplete_details"] == {"reason": "max_output_tokens"}


def test_response_repeats_request_fields() -> None:
    """The response repeats the request's instructions, tools and tool_choice."""
    body = request(
        "hi",
        instructions="Be brief.",
        tools=[SHELL],
        tool_choice="required",
        store=True,
    )
    response = translated_response(fixture_json("openai/chat_completion"), body)
    assert response["instructions"] == "Be brief."
    assert response["tools"] == [SHELL]
    assert response["tool_choice"] == "required"
    assert response["store"] is False


def test_error_keeps_openai_shape() -> None:
    """An upstream error becomes an OpenAI error with the upstream's type."""
    body = {"error": {"message": "context too long", "type": "invalid_request_error"}}
    assert ResponsesToChat().error(400, body) == {
        "error": {
            "message": "context too long",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }


def test_text_error_gets_status_type() -> None:
    """A text error body gets a type from the HTTP status."""
    assert (
        ResponsesToChat().error(502, "bad gateway")["error"]["type"] == "server_error"
    )


# -- streams ------------------------------------------------------------------


def stream_for(body: dict[str, Any] | None = None) -> Any:
    translation = ResponsesToChat()
    translation.request(body or request("hi", stream=True), model=MODEL)
    return translation.stream()


def test_recorded_stream_is_incomplete_with_usage() -> None:
    """The recorded stream, stopped by length, ends in response.incomplete."""
    body = translate_stream(stream_for(), fixture_body("openai/chat_completion_stream"))
    payloads = validate_responses_stream(body)
    assert [data["type"] for data in payloads] == [
        "response.created",
        "response.in_progress",
        "response.incomplete",
    ]
    response = payloads[-1]["response"]
    assert response["incomplete_details"] == {"reason": "max_output_tokens"}
    assert response["usage"]["input_tokens"] == 12
    assert response["usage"]["output_tokens"] == 100
    assert response["usage"]["output_tokens_details"] == {"reasoning_tokens": 100}


def test_text_and_function_calls_become_items() -> None:
    """Text and each call become output items, each added, streamed and done in turn."""
    body = translate_stream(stream_for(), chat_text_and_tool_stream())
    payloads = validate_responses_stream(body)
    items = responses_items(payloads)
    assert [item["type"] for item in items] == [
        "message",
        "function_call",
        "function_call",
    ]
    assert items[0]["content"][0]["text"] == "Let me check."
    assert items[1]["call_id"] == "call_a"
    assert items[1]["arguments"] == '{"command": "ls"}'
    assert items[2]["name"] == "Read"
    assert payloads[-1]["type"] == "response.completed"


def test_stream_usage_exact() -> None:
    """response.completed carries the usage chunk's counts."""
    payloads = validate_responses_stream(
        translate_stream(stream_for(), chat_text_and_tool_stream())
    )
    assert payloads[-1]["response"]["usage"] == {
        "input_tokens": 120,
        "input_tokens_details": {"cached_tokens": 100},
        "output_tokens": 30,
        "output_tokens_details": {"reasoning_tokens": 7},
        "total_tokens": 150,
    }


def test_bytewise_decoding_gives_same_events() -> None:
    """Feeding the decoder one byte at a time gives the same client bytes."""
    body = chat_text_and_tool_stream()
    assert translate_stream_bytewise(stream_for(), body) == translate_stream(
        stream_for(), body
    )


def test_every_prefix_is_valid() -> None:
    """After every event fed, the events so far obey the Responses rules."""
    outputs = translate_checking_prefixes(
        stream_for(), chat_text_and_tool_stream(), validate_responses_stream
    )
    assert outputs[0].startswith(b"event: response.created\n")


def test_custom_tool_call_streamed_as_custom_input() -> None:
    """A custom tool call streams as custom_tool_call_input events, unwrapped."""
    arguments = json.dumps({"input": "*** Begin Patch\n*** End Patch"})
    body = b"".join(
        [
            chat_chunk(
                {
                    "tool_calls": [
                        tool_fragment(
                            0, call_id="call_p", name="apply_patch", arguments=""
                        )
                    ]
                }
            ),
            chat_chunk({"tool_calls": [tool_fragment(0, arguments=arguments[:10])]}),
            chat_chunk({"tool_calls": [tool_fragment(0, arguments=arguments[10:])]}),
            chat_chunk({}, finish_reason="tool_calls"),
            chat_chunk(choices=False, usage=CHAT_USAGE),
            sse("[DONE]"),
        ]
    )
    payloads = validate_responses_stream(
        translate_stream(stream_for(request("hi", tools=[APPLY_PATCH])), body)
    )
    (item,) = responses_items(payloads)
    assert item["type"] == "custom_tool_call"
    assert item["input"] == "*** Begin Patch\n*** End Patch"
    kinds = [data["type"] for data in payloads]
    assert "response.custom_tool_call_input.done" in kinds
    assert "response.function_call_arguments.delta" not in kinds


def test_recorded_anthropic_streams_through_chat() -> None:
    """A recorded Anthropic tool stream, as chat chunks, keeps its text and call."""
    chat_side = ChatToAnthropic(clock=lambda: 0)
    chat_side.request(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "x"}],
            "stream_options": {"include_usage": True},
        },
        model="m",
    )
    chat_body = translate_stream(
        chat_side.stream(), fixture_body("anthropic/message_stream_tool_use")
    )
    payloads = validate_responses_stream(translate_stream(stream_for(), chat_body))
    message_item, call_item = responses_items(payloads)
    assert (
        message_item["content"][0]["text"]
        == "Okay, let's check the weather for San Francisco, CA:"
    )
    assert call_item["call_id"] == "toolu_01T1x1fJ34qAmk2tNTrN7Up6"
    assert json.loads(call_item["arguments"]) == {
        "location": "San Francisco, CA",
        "unit": "fahrenheit",
    }
    assert payloads[-1]["response"]["usage"]["output_tokens"] == 89


def test_upstream_error_chunk_becomes_response_failed() -> None:
    """An error chunk mid-stream ends the client stream with response.failed."""
    body = chat_chunk({"content": "par"}) + sse(
        {"error": {"message": "model crashed", "type": "server_error"}}
    )
    payloads = validate_responses_stream(translate_stream(stream_for(), body))
    failed = payloads[-1]
    assert failed["type"] == "response.failed"
    assert failed["response"]["status"] == "failed"
    assert failed["response"]["error"] == {
        "code": "server_error",
        "message": "model crashed",
    }


def test_finish_with_error_gives_response_failed() -> None:
    """finish(error=...) gives response.failed with that message."""
    stream = stream_for()
    body = translate_stream(stream, chat_chunk({"content": "par"}), finish=False)
    body += stream.finish(error="upstream reset the connection")
    payloads = validate_responses_stream(body)
    assert (
        payloads[-1]["response"]["error"]["message"] == "upstream reset the connection"
    )


def test_error_before_any_chunk_still_starts_response() -> None:
    """An error before any chunk still sends response.created first."""
    stream = stream_for()
    payloads = validate_responses_stream(stream.finish(error="connect timeout"))
    assert [data["type"] for data in payloads] == [
        "response.created",
        "response.in_progress",
        "response.failed",
    ]


def test_cut_without_finish_reason_fails() -> None:
    """A stream that ends before a finish_reason gives response.failed."""
    payloads = validate_responses_stream(
        translate_stream(stream_for(), chat_chunk({"content": "par"}))
    )
    assert payloads[-1]["response"]["error"]["message"] == INCOMPLETE_MESSAGE


def test_reasoning_deltas_dropped_from_stream() -> None:
    """reasoning_content deltas add no output item."""
    body = b"".join(
        [
            chat_chunk({"reasoning_content": "hmm"}),
            chat_chunk({"content": "4"}),
            chat_chunk({}, finish_reason="stop"),
            sse("[DONE]"),
        ]
    )
    items = responses_items(
        validate_responses_stream(translate_stream(stream_for(), body))
    )
    assert [item["type"] for item in items] == ["message"]


def test_nothing_after_terminal_event() -> None:
    """finish after the terminal event produces nothing."""
    stream = stream_for()
    translate_stream(
        stream, fixture_body("openai/chat_completion_stream"), finish=False
    )
    assert stream.finish() == b""
