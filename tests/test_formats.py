"""Tests for the API format modules: request facts, upstream bodies and usage."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from lynkr_extproc.errors import InvalidRequestError
from lynkr_extproc.formats import (
    anthropic_messages,
    format_for_path,
    openai_chat,
    openai_responses,
)
from lynkr_extproc.pricing import Usage
from lynkr_extproc.sse import Event, SSEDecoder

RECORDED = Path(__file__).parent / "fixtures" / "recorded"
# The OpenAI and Anthropic fixtures, read here with the client API formats;
# tests/test_recorded_providers.py covers the other providers' fixtures.
FIXTURE_NAMES = sorted(
    path.relative_to(RECORDED).with_suffix("").as_posix()
    for folder in ("openai", "anthropic")
    for path in (RECORDED / folder).glob("*.json")
)


def load_fixture(name: str) -> tuple[dict[str, Any], bytes]:
    """Return the metadata and the exact body bytes of a recorded fixture."""
    metadata = json.loads((RECORDED / f"{name}.json").read_text())
    body = (RECORDED / f"{name}.body").read_bytes()
    return metadata, body


def is_stream(metadata: dict[str, Any]) -> bool:
    return metadata["headers"]["content-type"].startswith("text/event-stream")


def fixture_params(*, stream: bool) -> list[Any]:
    """Return the fixture names whose body is (or is not) an event stream."""
    return [
        pytest.param(name, id=name)
        for name in FIXTURE_NAMES
        if is_stream(load_fixture(name)[0]) == stream
    ]


def meter_stream(api: ModuleType, chunks: list[bytes]) -> Any:
    """Feed body chunks through a decoder into a new meter and return the meter."""
    decoder = SSEDecoder()
    meter = api.new_meter()
    for chunk in chunks:
        for event in decoder.feed(chunk):
            meter.feed(event)
    decoder.close()
    return meter


# Recorded provider responses


def test_recorded_fixtures_found() -> None:
    """Every recorded fixture has a body and a known request path."""
    assert len(FIXTURE_NAMES) == 10
    for name in FIXTURE_NAMES:
        metadata, body = load_fixture(name)

        assert body, name
        assert format_for_path(metadata["request_path"]) is not None, name


@pytest.mark.parametrize("name", fixture_params(stream=False))
def test_recorded_json_usage(name: str) -> None:
    """A buffered JSON response gives the fixture's usage."""
    metadata, body = load_fixture(name)
    api = format_for_path(metadata["request_path"])
    flags: set[str] = set()

    usage = api.usage_from_json(json.loads(body), flags)

    assert usage == Usage(**metadata["usage"])
    assert flags == set()


@pytest.mark.parametrize("name", fixture_params(stream=True))
def test_recorded_stream_usage_whole(name: str) -> None:
    """A recorded stream fed as one chunk gives the fixture's usage."""
    metadata, body = load_fixture(name)
    api = format_for_path(metadata["request_path"])

    meter = meter_stream(api, [body])

    assert meter.usage == Usage(**metadata["usage"])
    assert meter.finished is True
    assert meter.failed is False
    assert meter.flags == set()


@pytest.mark.parametrize("name", fixture_params(stream=True))
def test_recorded_stream_usage_bytewise(name: str) -> None:
    """A recorded stream fed one byte at a time gives the fixture's usage."""
    metadata, body = load_fixture(name)
    api = format_for_path(metadata["request_path"])
    chunks = [body[index : index + 1] for index in range(len(body))]

    meter = meter_stream(api, chunks)

    assert meter.usage == Usage(**metadata["usage"])
    assert meter.finished is True
    assert meter.failed is False


@pytest.mark.parametrize(
    "name", [pytest.param(name, id=name) for name in FIXTURE_NAMES]
)
def test_recorded_request_facts(name: str) -> None:
    """read_request returns the model and stream flag of the fixture's request."""
    metadata, _ = load_fixture(name)
    api = format_for_path(metadata["request_path"])
    request = metadata["request"]

    facts = api.read_request(request)

    assert facts.model == request["model"]
    assert facts.stream is request.get("stream", False)


# Request facts


def chat_request(**fields: Any) -> dict[str, Any]:
    return {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "hi"}],
        **fields,
    }


def anthropic_request(**fields: Any) -> dict[str, Any]:
    return {
        "model": "claude-sonnet-4",
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": "hi"}],
        **fields,
    }


def responses_request(**fields: Any) -> dict[str, Any]:
    return {"model": "gpt-4o", "input": "hi", **fields}


REQUEST_BUILDERS = [
    pytest.param(openai_chat, chat_request, id="openai_chat"),
    pytest.param(anthropic_messages, anthropic_request, id="anthropic_messages"),
    pytest.param(openai_responses, responses_request, id="openai_responses"),
]


@pytest.mark.parametrize(("api", "build"), REQUEST_BUILDERS)
def test_read_request_model_and_stream(api: ModuleType, build: Any) -> None:
    """The model and a true stream flag are read from each API's body."""
    body = build(stream=True)

    facts = api.read_request(body)

    assert facts.model == body["model"]
    assert facts.stream is True


@pytest.mark.parametrize(("api", "build"), REQUEST_BUILDERS)
def test_read_request_stream_defaults_false(api: ModuleType, build: Any) -> None:
    """A body without "stream", or with null, is not streamed."""
    assert api.read_request(build()).stream is False
    assert api.read_request(build(stream=None)).stream is False


@pytest.mark.parametrize(
    ("api", "body", "cap"),
    [
        pytest.param(
            openai_chat, chat_request(max_tokens=300), 300, id="chat-max_tokens"
        ),
        pytest.param(
            openai_chat,
            chat_request(max_completion_tokens=400),
            400,
            id="chat-max_completion_tokens",
        ),
        pytest.param(
            openai_chat,
            chat_request(max_tokens=300, max_completion_tokens=400),
            400,
            id="chat-both-prefers-max_completion_tokens",
        ),
        pytest.param(openai_chat, chat_request(), None, id="chat-none"),
        pytest.param(
            anthropic_messages, anthropic_request(), 1024, id="anthropic-max_tokens"
        ),
        pytest.param(
            openai_responses,
            responses_request(max_output_tokens=500),
            500,
            id="responses-max_output_tokens",
        ),
        pytest.param(openai_responses, responses_request(), None, id="responses-none"),
    ],
)
def test_read_request_output_cap(
    api: ModuleType, body: dict[str, Any], cap: Any
) -> None:
    """The output cap comes from each API's own max-tokens field."""
    assert api.read_request(body).output_cap == cap


def test_chat_tool_names() -> None:
    """Chat tool names come from each tool's function object."""
    tools = [
        {"type": "function", "function": {"name": "get_weather", "parameters": {}}},
        {"type": "function", "function": {"name": "Bash", "parameters": {}}},
    ]

    facts = openai_chat.read_request(chat_request(tools=tools))

    assert facts.tool_names == ["get_weather", "Bash"]


def test_anthropic_tool_names() -> None:
    """Anthropic tool names come from each tool's top-level name."""
    tools = [
        {"name": "get_weather", "input_schema": {"type": "object"}},
        {"type": "web_search_20250305", "name": "web_search"},
    ]

    facts = anthropic_messages.read_request(anthropic_request(tools=tools))

    assert facts.tool_names == ["get_weather", "web_search"]


def test_responses_tool_names() -> None:
    """Responses tools are named by their name, or by type for built-in tools."""
    tools = [
        {"type": "function", "name": "get_weather", "parameters": {}},
        {"type": "web_search"},
    ]

    facts = openai_responses.read_request(responses_request(tools=tools))

    assert facts.tool_names == ["get_weather", "web_search"]


CHAT_TOOL_CALL = {
    "role": "assistant",
    "content": None,
    "tool_calls": [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
        }
    ],
}


def test_chat_in_tool_loop() -> None:
    """A chat request whose last message has role "tool" is in a tool loop."""
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        CHAT_TOOL_CALL,
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
    ]

    facts = openai_chat.read_request(chat_request(messages=messages))

    assert facts.in_tool_loop is True
    assert facts.tool_result_count == 1


def test_chat_not_in_tool_loop_after_user() -> None:
    """A chat request ending with a user message is not in a tool loop."""
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        CHAT_TOOL_CALL,
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
        {"role": "assistant", "content": "It is 18C."},
        {"role": "user", "content": "Thanks"},
    ]

    facts = openai_chat.read_request(chat_request(messages=messages))

    assert facts.in_tool_loop is False
    assert facts.tool_result_count == 1


ANTHROPIC_TOOL_USE = {
    "role": "assistant",
    "content": [
        {
            "type": "tool_use",
            "id": "toolu_1",
            "name": "get_weather",
            "input": {"city": "Paris"},
        }
    ],
}


def test_anthropic_in_tool_loop() -> None:
    """An Anthropic request whose last message has a tool_result is in a tool loop."""
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        ANTHROPIC_TOOL_USE,
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"}
            ],
        },
    ]

    facts = anthropic_messages.read_request(anthropic_request(messages=messages))

    assert facts.in_tool_loop is True
    assert facts.tool_result_count == 1


def test_anthropic_not_in_tool_loop_after_text() -> None:
    """An Anthropic request whose last user message is plain text is not in a loop."""
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        ANTHROPIC_TOOL_USE,
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"}
            ],
        },
        {"role": "assistant", "content": "It is 18C."},
        {"role": "user", "content": "Thanks"},
    ]

    facts = anthropic_messages.read_request(anthropic_request(messages=messages))

    assert facts.in_tool_loop is False
    assert facts.tool_result_count == 1


def test_responses_in_tool_loop() -> None:
    """A Responses request whose last item is function_call_output is in a loop."""
    items = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "type": "function_call",
            "call_id": "call_1",
            "name": "get_weather",
            "arguments": "{}",
        },
        {"type": "function_call_output", "call_id": "call_1", "output": "18C"},
    ]

    facts = openai_responses.read_request(responses_request(input=items))

    assert facts.in_tool_loop is True
    assert facts.tool_result_count == 1


def test_responses_not_in_tool_loop_after_message() -> None:
    """A Responses request whose last item is a user message is not in a loop."""
    items = [
        {"type": "function_call_output", "call_id": "call_1", "output": "18C"},
        {"role": "user", "content": "Thanks"},
    ]

    facts = openai_responses.read_request(responses_request(input=items))

    assert facts.in_tool_loop is False


def test_chat_client_wants_usage() -> None:
    """A chat client wants usage only when it sets stream_options.include_usage."""
    with_usage = chat_request(stream=True, stream_options={"include_usage": True})
    without_usage = chat_request(stream=True, stream_options={"include_usage": False})

    assert openai_chat.read_request(with_usage).client_wants_usage is True
    assert openai_chat.read_request(without_usage).client_wants_usage is False
    assert (
        openai_chat.read_request(chat_request(stream=True)).client_wants_usage is False
    )


def test_anthropic_and_responses_clients_want_usage() -> None:
    """Anthropic and Responses streams always carry usage to the client."""
    anthropic = anthropic_messages.read_request(anthropic_request(stream=True))
    responses = openai_responses.read_request(responses_request(stream=True))

    assert anthropic.client_wants_usage is True
    assert responses.client_wants_usage is True


# Upstream bodies


def test_chat_prepare_streamed_injects_include_usage() -> None:
    """A streamed chat body gets the model and include_usage, nothing else changes."""
    body = chat_request(stream=True, temperature=0.2, tools=[], user="u-1")
    original = copy.deepcopy(body)

    prepared = openai_chat.prepare_upstream(body, model="gpt-4o", include_usage=True)

    assert prepared == {
        **original,
        "model": "gpt-4o",
        "stream_options": {"include_usage": True},
    }
    assert body == original


def test_chat_prepare_keeps_other_stream_options() -> None:
    """Injecting include_usage keeps the client's other stream options."""
    body = chat_request(stream=True, stream_options={"include_obfuscation": False})
    original = copy.deepcopy(body)

    prepared = openai_chat.prepare_upstream(body, model="gpt-4o", include_usage=True)

    assert prepared["stream_options"] == {
        "include_obfuscation": False,
        "include_usage": True,
    }
    assert body == original


def test_chat_prepare_buffered_no_stream_options() -> None:
    """A non-streamed chat body gets only the new model."""
    body = chat_request(temperature=0.2)
    original = copy.deepcopy(body)

    prepared = openai_chat.prepare_upstream(body, model="gpt-4o", include_usage=True)

    assert prepared == {**original, "model": "gpt-4o"}


def test_chat_prepare_without_include_usage() -> None:
    """With include_usage False a streamed chat body gets only the new model."""
    body = chat_request(stream=True)
    original = copy.deepcopy(body)

    prepared = openai_chat.prepare_upstream(body, model="gpt-4o", include_usage=False)

    assert prepared == {**original, "model": "gpt-4o"}


@pytest.mark.parametrize(
    ("api", "build"),
    [
        pytest.param(anthropic_messages, anthropic_request, id="anthropic_messages"),
        pytest.param(openai_responses, responses_request, id="openai_responses"),
    ],
)
def test_prepare_sets_only_model(api: ModuleType, build: Any) -> None:
    """Anthropic and Responses streamed bodies get only the new model."""
    body = build(stream=True, temperature=0.2)
    original = copy.deepcopy(body)

    prepared = api.prepare_upstream(body, model="routed-model", include_usage=True)

    assert prepared == {**original, "model": "routed-model"}
    assert body == original


# Invalid requests


def without(body: dict[str, Any], field: str) -> dict[str, Any]:
    return {key: value for key, value in body.items() if key != field}


INVALID_REQUESTS = [
    pytest.param(
        openai_chat,
        without(chat_request(), "model"),
        '"model"',
        id="chat-missing-model",
    ),
    pytest.param(openai_chat, chat_request(model=""), '"model"', id="chat-empty-model"),
    pytest.param(
        openai_chat, chat_request(messages="hi"), '"messages"', id="chat-messages-str"
    ),
    pytest.param(
        openai_chat, chat_request(messages=[]), '"messages"', id="chat-messages-empty"
    ),
    pytest.param(
        openai_chat, chat_request(max_tokens=0), "max_tokens", id="chat-max_tokens-0"
    ),
    pytest.param(
        openai_chat, chat_request(max_tokens=-5), "max_tokens", id="chat-max_tokens-neg"
    ),
    pytest.param(
        openai_chat,
        chat_request(max_tokens="100"),
        "max_tokens",
        id="chat-max_tokens-str",
    ),
    pytest.param(
        openai_chat,
        chat_request(max_tokens=1.5),
        "max_tokens",
        id="chat-max_tokens-float",
    ),
    pytest.param(
        openai_chat,
        chat_request(max_tokens=True),
        "max_tokens",
        id="chat-max_tokens-bool",
    ),
    pytest.param(
        openai_chat,
        chat_request(max_completion_tokens=0),
        "max_completion_tokens",
        id="chat-max_completion_tokens-0",
    ),
    pytest.param(
        openai_chat, chat_request(stream="true"), '"stream"', id="chat-stream-str"
    ),
    pytest.param(openai_chat, chat_request(stream=1), '"stream"', id="chat-stream-int"),
    pytest.param(
        anthropic_messages,
        without(anthropic_request(), "model"),
        '"model"',
        id="anthropic-missing-model",
    ),
    pytest.param(
        anthropic_messages,
        anthropic_request(messages={"role": "user"}),
        '"messages"',
        id="anthropic-messages-dict",
    ),
    pytest.param(
        anthropic_messages,
        anthropic_request(max_tokens=0),
        "max_tokens",
        id="anthropic-max_tokens-0",
    ),
    pytest.param(
        anthropic_messages,
        anthropic_request(stream="yes"),
        '"stream"',
        id="anthropic-stream-str",
    ),
    pytest.param(
        openai_responses,
        without(responses_request(), "model"),
        '"model"',
        id="responses-missing-model",
    ),
    pytest.param(
        openai_responses,
        responses_request(input=42),
        '"input"',
        id="responses-input-int",
    ),
    pytest.param(
        openai_responses,
        responses_request(max_output_tokens=-1),
        "max_output_tokens",
        id="responses-max_output_tokens-neg",
    ),
    pytest.param(
        openai_responses,
        responses_request(stream="false"),
        '"stream"',
        id="responses-stream-str",
    ),
]


@pytest.mark.parametrize(("api", "body", "field"), INVALID_REQUESTS)
def test_invalid_request_rejected(
    api: ModuleType, body: dict[str, Any], field: str
) -> None:
    """An invalid body raises InvalidRequestError naming the field."""
    with pytest.raises(InvalidRequestError) as caught:
        api.read_request(body)

    assert field in caught.value.message
    assert caught.value.status == 400


def test_invalid_max_tokens_message_shows_value() -> None:
    """The max_tokens error shows the rejected value and the expected kind."""
    with pytest.raises(InvalidRequestError) as caught:
        openai_chat.read_request(chat_request(max_tokens="100"))

    assert caught.value.message == "max_tokens must be a positive integer, got '100'"


def test_invalid_stream_message_shows_value() -> None:
    """The stream error shows the rejected value and the expected kind."""
    with pytest.raises(InvalidRequestError) as caught:
        openai_chat.read_request(chat_request(stream="true"))

    assert caught.value.message == "\"stream\" must be true or false, got 'true'"


# Stream meters


def anthropic_event(payload: dict[str, Any]) -> Event:
    return Event(event=payload["type"], data=json.dumps(payload))


def test_anthropic_delta_null_fields_keep_start_values() -> None:
    """A null count in message_delta usage keeps the message_start value."""
    meter = anthropic_messages.new_meter()
    start_usage = {"input_tokens": 9, "cache_read_input_tokens": 5, "output_tokens": 1}
    delta_usage = {
        "input_tokens": None,
        "cache_read_input_tokens": None,
        "cache_creation_input_tokens": None,
        "output_tokens": 16,
    }

    meter.feed(
        anthropic_event({"type": "message_start", "message": {"usage": start_usage}})
    )
    meter.feed(anthropic_event({"type": "message_delta", "usage": delta_usage}))

    assert meter.usage == Usage(input_tokens=9, cache_read_tokens=5, output_tokens=16)


def test_anthropic_error_event_marks_failed() -> None:
    """An Anthropic error event marks the stream failed and unfinished."""
    meter = anthropic_messages.new_meter()
    error = {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }

    meter.feed(anthropic_event(error))

    assert meter.failed is True
    assert meter.finished is False


def test_chat_meter_ignores_non_json_events() -> None:
    """A chat event whose data is not JSON changes nothing."""
    meter = openai_chat.new_meter()

    meter.feed(Event(data="not json"))

    assert meter.usage is None
    assert meter.finished is False
    assert meter.failed is False
