"""Shared pieces of the API translations, and strict stream validators.

The validators here check a translated stream against the client API's
event rules; the pair test modules import them. Each validator is also
tested on broken streams below, so that a passing stream test means
something.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lynkr_extproc.errors import InvalidRequestError
from lynkr_extproc.sse import Event, SSEDecoder
from lynkr_extproc.translate import (
    FIELD_RULES,
    SUPPORTED_PAIRS,
    translation_for,
)
from lynkr_extproc.translate._common import (
    derive_id,
    dump_arguments,
    parse_arguments,
    parse_data_url,
    takes_reasoning_effort,
)
from lynkr_extproc.translate._errors import (
    MAX_MESSAGE_CHARS,
    anthropic_error_type,
    error_message,
    error_type,
)

RECORDED = Path(__file__).parent / "fixtures" / "recorded"


class StreamInvalid(AssertionError):
    """A translated stream breaks its API's event rules."""


# -- fixtures and feeding -----------------------------------------------------


def fixture_meta(name: str) -> dict[str, Any]:
    return json.loads((RECORDED / f"{name}.json").read_text())


def fixture_body(name: str) -> bytes:
    return (RECORDED / f"{name}.body").read_bytes()


def fixture_json(name: str) -> dict[str, Any]:
    return json.loads(fixture_body(name))


def decode_events(body: bytes) -> list[Event]:
    """Decode a whole SSE body into events with the project's decoder."""
    decoder = SSEDecoder()
    events = decoder.feed(body)
    decoder.close()
    return events


def translate_stream(translator: Any, body: bytes, *, finish: bool = True) -> bytes:
    """Feed a whole upstream body, event by event, and return the client bytes."""
    out = b"".join(translator.feed(event) for event in decode_events(body))
    return out + translator.finish() if finish else out


def translate_stream_bytewise(translator: Any, body: bytes) -> bytes:
    """Feed an upstream body to the decoder one byte at a time."""
    decoder = SSEDecoder()
    out = bytearray()
    for offset in range(len(body)):
        for event in decoder.feed(body[offset : offset + 1]):
            out += translator.feed(event)
    decoder.close()
    return bytes(out + translator.finish())


def translate_checking_prefixes(
    translator: Any, body: bytes, validate: Any
) -> list[bytes]:
    """Feed events one by one, validating the client stream after each call."""
    outputs = []
    stream = b""
    for event in decode_events(body):
        output = translator.feed(event)
        outputs.append(output)
        stream += output
        validate(stream, complete=False)
    output = translator.finish()
    outputs.append(output)
    validate(stream + output)
    return outputs


def sse(data: dict[str, Any] | str) -> bytes:
    """Frame one Chat Completions chunk, as an upstream sends it."""
    text = data if isinstance(data, str) else json.dumps(data)
    return f"data: {text}\n\n".encode()


def chat_chunk(
    delta: dict[str, Any] | None = None,
    *,
    finish_reason: str | None = None,
    usage: dict[str, Any] | None = None,
    choices: bool = True,
) -> bytes:
    """Build one chat.completion.chunk event in the OpenAI streaming format."""
    chunk: dict[str, Any] = {
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "created": 1755137921,
        "model": "qwen3:8b",
        "choices": [],
    }
    if choices:
        choice = {"index": 0, "delta": delta or {}, "finish_reason": finish_reason}
        chunk["choices"] = [choice]
    if usage is not None:
        chunk["usage"] = usage
    return sse(chunk)


def tool_fragment(
    index: int,
    *,
    call_id: str | None = None,
    name: str | None = None,
    arguments: str | None = None,
) -> dict[str, Any]:
    """Build one delta.tool_calls entry."""
    fragment: dict[str, Any] = {"index": index}
    if call_id is not None:
        fragment["id"] = call_id
        fragment["type"] = "function"
    function = {}
    if name is not None:
        function["name"] = name
    if arguments is not None:
        function["arguments"] = arguments
    if function:
        fragment["function"] = function
    return fragment


CHAT_USAGE = {
    "prompt_tokens": 120,
    "completion_tokens": 30,
    "total_tokens": 150,
    "prompt_tokens_details": {"cached_tokens": 100},
    "completion_tokens_details": {"reasoning_tokens": 7},
}


def chat_text_and_tool_stream() -> bytes:
    """Build a chat stream with text then two tool calls, then usage.

    The shapes follow OpenAI's streaming format: a role chunk, content
    deltas, per call a first fragment with id and name and later
    fragments with argument pieces, a finish_reason chunk, a usage chunk
    with empty choices, and [DONE].
    """
    return b"".join(
        [
            chat_chunk({"role": "assistant", "content": ""}),
            chat_chunk({"content": "Let me "}),
            chat_chunk({"content": "check."}),
            chat_chunk(
                {"tool_calls": [tool_fragment(0, call_id="call_a", name="Bash")]}
            ),
            chat_chunk({"tool_calls": [tool_fragment(0, arguments='{"command":')]}),
            chat_chunk({"tool_calls": [tool_fragment(0, arguments=' "ls"}')]}),
            chat_chunk(
                {
                    "tool_calls": [
                        tool_fragment(1, call_id="call_b", name="Read", arguments="")
                    ]
                }
            ),
            chat_chunk(
                {"tool_calls": [tool_fragment(1, arguments='{"file_path": "/a"}')]}
            ),
            chat_chunk({}, finish_reason="tool_calls"),
            chat_chunk(choices=False, usage=CHAT_USAGE),
            sse("[DONE]"),
        ]
    )


# -- framing ------------------------------------------------------------------


def split_named_events(body: bytes) -> list[tuple[str, dict[str, Any]]]:
    """Parse `event: X` / `data: {...}` pairs, each ended by one blank line."""
    text = body.decode()
    if text and not text.endswith("\n\n"):
        raise StreamInvalid(f"stream does not end with a blank line: {text[-40:]!r}")
    events = []
    for block in text.split("\n\n")[:-1]:
        lines = block.split("\n")
        if len(lines) != 2:
            raise StreamInvalid(f"expected event and data lines, got {block!r}")
        if not lines[0].startswith("event: ") or not lines[1].startswith("data: "):
            raise StreamInvalid(f"expected event and data lines, got {block!r}")
        name = lines[0][len("event: ") :]
        data = json.loads(lines[1][len("data: ") :])
        if data.get("type") != name:
            raise StreamInvalid(
                f"event {name!r} carries data of type {data.get('type')!r}"
            )
        events.append((name, data))
    return events


def split_data_events(body: bytes) -> list[str]:
    """Parse `data: ...` events, each one line and ended by one blank line."""
    text = body.decode()
    if text and not text.endswith("\n\n"):
        raise StreamInvalid(f"stream does not end with a blank line: {text[-40:]!r}")
    datas = []
    for block in text.split("\n\n")[:-1]:
        if "\n" in block or not block.startswith("data: "):
            raise StreamInvalid(f"expected one data line, got {block!r}")
        datas.append(block[len("data: ") :])
    return datas


# -- Anthropic Messages stream validator --------------------------------------

ANTHROPIC_STOP_REASONS = {
    "end_turn",
    "max_tokens",
    "stop_sequence",
    "tool_use",
    "pause_turn",
    "refusal",
}
_DELTA_FOR_BLOCK = {
    "text": {"text_delta"},
    "tool_use": {"input_json_delta"},
    "thinking": {"thinking_delta", "signature_delta"},
}


def validate_anthropic_stream(
    body: bytes, *, complete: bool = True
) -> list[dict[str, Any]]:
    """Check Anthropic's event order rules and return the event payloads.

    With complete=False the body may stop anywhere between events.
    """
    events = split_named_events(body)
    state = _AnthropicState()
    for position, (name, data) in enumerate(events):
        if state.ended:
            raise StreamInvalid(
                f"event {position} ({name}) follows the end of the stream"
            )
        state.apply(name, data, position)
    if complete and not state.ended:
        raise StreamInvalid("stream ended without message_stop or error")
    return [data for _, data in events]


class _AnthropicState:
    def __init__(self) -> None:
        self.started = False
        self.ended = False
        self.next_index = 0
        self.open_index: int | None = None
        self.open_type: str | None = None
        self.partial_json = ""
        self.delta_seen = False

    def apply(self, name: str, data: dict[str, Any], position: int) -> None:
        if name == "error":
            self._error(data)
            return
        if not self.started and name != "message_start":
            raise StreamInvalid(f"event {position} is {name}, expected message_start")
        handler = getattr(self, f"_{name}", None)
        if handler is None:
            raise StreamInvalid(f"event {position} has unknown type {name!r}")
        handler(data)

    def _error(self, data: dict[str, Any]) -> None:
        error = data.get("error")
        if not isinstance(error, dict) or not isinstance(error.get("type"), str):
            raise StreamInvalid(f"error event without error.type: {data!r}")
        if not isinstance(error.get("message"), str):
            raise StreamInvalid(f"error event without error.message: {data!r}")
        self.ended = True

    def _message_start(self, data: dict[str, Any]) -> None:
        if self.started:
            raise StreamInvalid("second message_start")
        message = data["message"]
        if message["type"] != "message" or message["role"] != "assistant":
            raise StreamInvalid(f"message_start with bad message: {message!r}")
        if message["content"] != [] or not message["id"].startswith("msg_"):
            raise StreamInvalid(f"message_start with bad message: {message!r}")
        _require_counts(message["usage"], ("input_tokens", "output_tokens"))
        self.started = True

    def _ping(self, data: dict[str, Any]) -> None:
        return

    def _content_block_start(self, data: dict[str, Any]) -> None:
        if self.open_index is not None:
            raise StreamInvalid(
                f"block {data['index']} starts while {self.open_index} is open"
            )
        if self.delta_seen:
            raise StreamInvalid("content_block_start after message_delta")
        if data["index"] != self.next_index:
            raise StreamInvalid(
                f"block index {data['index']}, expected {self.next_index}"
            )
        block = data["content_block"]
        if block["type"] not in _DELTA_FOR_BLOCK:
            raise StreamInvalid(f"unknown block type {block['type']!r}")
        incomplete = (
            not block.get("id") or not block.get("name") or block.get("input") != {}
        )
        if block["type"] == "tool_use" and incomplete:
            raise StreamInvalid(f"tool_use block start is incomplete: {block!r}")
        self.open_index = data["index"]
        self.open_type = block["type"]
        self.partial_json = ""
        self.next_index += 1

    def _content_block_delta(self, data: dict[str, Any]) -> None:
        if data["index"] != self.open_index:
            raise StreamInvalid(
                f"delta for block {data['index']}, open is {self.open_index}"
            )
        delta_type = data["delta"]["type"]
        if delta_type not in _DELTA_FOR_BLOCK[self.open_type]:
            raise StreamInvalid(f"{delta_type} in a {self.open_type} block")
        if delta_type == "input_json_delta":
            self.partial_json += data["delta"]["partial_json"]

    def _content_block_stop(self, data: dict[str, Any]) -> None:
        if data["index"] != self.open_index:
            raise StreamInvalid(
                f"stop for block {data['index']}, open is {self.open_index}"
            )
        tool_json = self.open_type == "tool_use" and self.partial_json
        if tool_json and not isinstance(json.loads(self.partial_json), dict):
            raise StreamInvalid(f"tool input is not an object: {self.partial_json!r}")
        self.open_index = None
        self.open_type = None

    def _message_delta(self, data: dict[str, Any]) -> None:
        if self.open_index is not None:
            raise StreamInvalid(f"message_delta while block {self.open_index} is open")
        if self.delta_seen:
            raise StreamInvalid("second message_delta")
        if data["delta"]["stop_reason"] not in ANTHROPIC_STOP_REASONS:
            raise StreamInvalid(f"unknown stop_reason {data['delta']['stop_reason']!r}")
        _require_counts(data["usage"], ("output_tokens",))
        self.delta_seen = True

    def _message_stop(self, data: dict[str, Any]) -> None:
        if not self.delta_seen:
            raise StreamInvalid("message_stop without message_delta")
        self.ended = True


def _require_counts(usage: Any, names: tuple[str, ...]) -> None:
    for name in names:
        value = usage.get(name) if isinstance(usage, dict) else None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise StreamInvalid(f"usage.{name} is not a count: {usage!r}")


def anthropic_blocks(payloads: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rebuild the content blocks of a valid Anthropic stream."""
    blocks: list[dict[str, Any]] = []
    for data in payloads:
        if data["type"] == "content_block_start":
            blocks.append({**data["content_block"], "_json": ""})
        elif data["type"] == "content_block_delta":
            delta = data["delta"]
            if delta["type"] == "text_delta":
                blocks[-1]["text"] += delta["text"]
            elif delta["type"] == "input_json_delta":
                blocks[-1]["_json"] += delta["partial_json"]
    for block in blocks:
        raw = block.pop("_json")
        if block["type"] == "tool_use" and raw:
            block["input"] = json.loads(raw)
    return blocks


# -- Chat Completions stream validator ----------------------------------------


def validate_chat_stream(body: bytes, *, complete: bool = True) -> list[dict[str, Any]]:
    """Check a chat chunk stream and return its chunks, [DONE] excluded.

    Every event but a final [DONE] is a JSON chunk, and [DONE] occurs
    once, last. An `error` chunk may end the stream in place of [DONE]. Tool
    call fragments start with id, type and name, and their arguments
    join into a JSON object. The usage chunk, if any, comes after the
    finish_reason and before [DONE].
    """
    datas = split_data_events(body)
    chunks: list[dict[str, Any]] = []
    state = {"finished": False, "usage": False, "ended": False, "id": None}
    arguments: dict[int, str] = {}
    for position, data in enumerate(datas):
        if state["ended"]:
            raise StreamInvalid(f"event {position} follows the end of the stream")
        if data == "[DONE]":
            if not state["finished"]:
                raise StreamInvalid("[DONE] before any finish_reason")
            state["ended"] = True
            continue
        chunk = json.loads(data)
        if "error" in chunk:
            _check_error_chunk(chunk)
            state["ended"] = True
            chunks.append(chunk)
            continue
        _check_chunk(chunk, state, arguments)
        chunks.append(chunk)
    if complete and not state["ended"]:
        raise StreamInvalid("stream ended without [DONE] or an error chunk")
    if complete:
        for index, text in arguments.items():
            if text and not isinstance(json.loads(text), dict):
                raise StreamInvalid(f"tool call {index} arguments are not an object")
    return chunks


def _check_error_chunk(chunk: dict[str, Any]) -> None:
    error = chunk["error"]
    if not isinstance(error.get("message"), str) or not isinstance(
        error.get("type"), str
    ):
        raise StreamInvalid(f"error chunk without message and type: {chunk!r}")


def _check_chunk(
    chunk: dict[str, Any], state: dict[str, Any], arguments: dict[int, str]
) -> None:
    if chunk.get("object") != "chat.completion.chunk":
        raise StreamInvalid(f"chunk object is {chunk.get('object')!r}")
    if state["id"] is None:
        state["id"] = chunk["id"]
    if chunk["id"] != state["id"]:
        raise StreamInvalid(f"chunk id changed from {state['id']!r} to {chunk['id']!r}")
    if state["usage"]:
        raise StreamInvalid("chunk after the usage chunk")
    if chunk["choices"] == []:
        if not state["finished"] or not isinstance(chunk.get("usage"), dict):
            raise StreamInvalid(f"usage chunk out of place: {chunk!r}")
        _require_counts(
            chunk["usage"], ("prompt_tokens", "completion_tokens", "total_tokens")
        )
        state["usage"] = True
        return
    (choice,) = chunk["choices"]
    if state["finished"]:
        raise StreamInvalid("choice chunk after the finish_reason")
    for fragment in choice["delta"].get("tool_calls") or []:
        index = fragment["index"]
        if index not in arguments:
            if not fragment.get("id") or fragment.get("type") != "function":
                raise StreamInvalid(f"first fragment of call {index} lacks id or type")
            if not fragment["function"].get("name"):
                raise StreamInvalid(f"first fragment of call {index} lacks a name")
            arguments[index] = ""
        arguments[index] += fragment.get("function", {}).get("arguments", "")
    if choice["finish_reason"] is not None:
        state["finished"] = True


def chat_text(chunks: list[dict[str, Any]]) -> str:
    return "".join(
        chunk["choices"][0]["delta"].get("content") or ""
        for chunk in chunks
        if chunk.get("choices")
    )


def chat_tool_calls(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Join the tool call fragments of a valid chat stream."""
    calls: dict[int, dict[str, Any]] = {}
    for chunk in chunks:
        for choice in chunk.get("choices") or []:
            for fragment in choice["delta"].get("tool_calls") or []:
                call = calls.setdefault(
                    fragment["index"],
                    {"id": fragment.get("id"), "name": None, "arguments": ""},
                )
                function = fragment.get("function") or {}
                call["name"] = call["name"] or function.get("name")
                call["arguments"] += function.get("arguments", "")
    return [calls[index] for index in sorted(calls)]


# -- Responses stream validator -----------------------------------------------

RESPONSES_TERMINAL = {"response.completed", "response.incomplete", "response.failed"}


def validate_responses_stream(
    body: bytes, *, complete: bool = True
) -> list[dict[str, Any]]:
    """Check the Responses event order rules and return the event payloads."""
    events = split_named_events(body)
    state = _ResponsesState()
    for position, (name, data) in enumerate(events):
        if data.get("sequence_number") != position:
            raise StreamInvalid(
                f"event {position} has sequence_number {data.get('sequence_number')}"
            )
        if state.ended:
            raise StreamInvalid(f"event {position} ({name}) follows the terminal event")
        state.apply(name, data, position)
    if complete and not state.ended:
        raise StreamInvalid("stream ended without a terminal response event")
    return [data for _, data in events]


class _ResponsesState:
    def __init__(self) -> None:
        self.phase = "created"
        self.ended = False
        self.done_items: list[dict[str, Any]] = []
        self.open_item: dict[str, Any] | None = None
        self.part_open = False
        self.text = ""
        self.arguments = ""

    def apply(self, name: str, data: dict[str, Any], position: int) -> None:
        if position == 0 and name != "response.created":
            raise StreamInvalid(f"first event is {name}, expected response.created")
        if position == 1 and name != "response.in_progress":
            raise StreamInvalid(
                f"second event is {name}, expected response.in_progress"
            )
        if name in ("response.created", "response.in_progress"):
            if position > 1 or data["response"]["status"] != "in_progress":
                raise StreamInvalid(f"{name} at event {position}")
            return
        if name in RESPONSES_TERMINAL:
            self._terminal(name, data)
            return
        if name == "response.output_item.added":
            self._item_added(data)
            return
        if self.open_item is None or data.get("output_index") != len(self.done_items):
            raise StreamInvalid(f"{name} without its open output item")
        if "item_id" in data and data["item_id"] != self.open_item["id"]:
            raise StreamInvalid(
                f"{name} for item {data['item_id']}, open is {self.open_item['id']}"
            )
        handler = getattr(self, "_" + name.split(".", 1)[1].replace(".", "_"), None)
        if handler is None:
            raise StreamInvalid(f"unexpected event type {name!r}")
        handler(data)

    def _item_added(self, data: dict[str, Any]) -> None:
        if self.open_item is not None:
            raise StreamInvalid("output item added while another is open")
        if data["output_index"] != len(self.done_items):
            raise StreamInvalid(
                f"output_index {data['output_index']}, expected {len(self.done_items)}"
            )
        item = data["item"]
        if item.get("status", "in_progress") != "in_progress" or not item["id"]:
            raise StreamInvalid(f"added item is not in progress: {item!r}")
        self.open_item = item
        self.text = ""
        self.arguments = ""

    def _content_part_added(self, data: dict[str, Any]) -> None:
        if self.open_item["type"] != "message" or self.part_open:
            raise StreamInvalid("content_part.added out of place")
        self.part_open = True

    def _output_text_delta(self, data: dict[str, Any]) -> None:
        if not self.part_open:
            raise StreamInvalid("output_text.delta without an open content part")
        self.text += data["delta"]

    def _output_text_done(self, data: dict[str, Any]) -> None:
        if not self.part_open or data["text"] != self.text:
            raise StreamInvalid("output_text.done text differs from its deltas")

    def _content_part_done(self, data: dict[str, Any]) -> None:
        if not self.part_open or data["part"]["text"] != self.text:
            raise StreamInvalid("content_part.done text differs from its deltas")
        self.part_open = False

    def _reasoning_summary_part_added(self, data: dict[str, Any]) -> None:
        self._require_reasoning()

    def _reasoning_summary_text_delta(self, data: dict[str, Any]) -> None:
        self._require_reasoning()

    def _reasoning_summary_text_done(self, data: dict[str, Any]) -> None:
        self._require_reasoning()

    def _reasoning_summary_part_done(self, data: dict[str, Any]) -> None:
        self._require_reasoning()

    def _require_reasoning(self) -> None:
        if self.open_item["type"] != "reasoning":
            raise StreamInvalid("reasoning summary event outside a reasoning item")

    def _function_call_arguments_delta(self, data: dict[str, Any]) -> None:
        if self.open_item["type"] != "function_call":
            raise StreamInvalid("arguments delta outside a function call")
        self.arguments += data["delta"]

    def _function_call_arguments_done(self, data: dict[str, Any]) -> None:
        if data["arguments"] != self.arguments:
            raise StreamInvalid("function_call_arguments.done differs from its deltas")
        if self.arguments and not isinstance(json.loads(self.arguments), dict):
            raise StreamInvalid(f"arguments are not a JSON object: {self.arguments!r}")

    def _custom_tool_call_input_delta(self, data: dict[str, Any]) -> None:
        if self.open_item["type"] != "custom_tool_call":
            raise StreamInvalid("custom input delta outside a custom tool call")
        self.arguments += data["delta"]

    def _custom_tool_call_input_done(self, data: dict[str, Any]) -> None:
        if data["input"] != self.arguments:
            raise StreamInvalid("custom_tool_call_input.done differs from its deltas")

    def _output_item_done(self, data: dict[str, Any]) -> None:
        item = data["item"]
        if item["id"] != self.open_item["id"]:
            raise StreamInvalid(f"output_item.done for another item: {item!r}")
        if item.get("status", "completed") != "completed":
            raise StreamInvalid(
                f"output_item.done does not complete the open item: {item!r}"
            )
        if self.part_open:
            raise StreamInvalid("output_item.done while a content part is open")
        if item["type"] == "message" and item["content"][0]["text"] != self.text:
            raise StreamInvalid("message item text differs from its deltas")
        if item["type"] == "function_call" and item["arguments"] != self.arguments:
            raise StreamInvalid("function_call item arguments differ from its deltas")
        if item["type"] == "custom_tool_call" and item["input"] != self.arguments:
            raise StreamInvalid("custom_tool_call item input differs from its deltas")
        self.done_items.append(item)
        self.open_item = None

    def _terminal(self, name: str, data: dict[str, Any]) -> None:
        response = data["response"]
        if name != "response.failed" and self.open_item is not None:
            raise StreamInvalid(f"{name} while an output item is open")
        if response["output"] != self.done_items:
            raise StreamInvalid(f"{name} output differs from the done items")
        expected = name.split(".", 1)[1]
        if response["status"] != expected:
            raise StreamInvalid(f"{name} has status {response['status']!r}")
        if name == "response.failed":
            if not response["error"]["message"]:
                raise StreamInvalid("response.failed without an error message")
        else:
            _require_counts(
                response["usage"], ("input_tokens", "output_tokens", "total_tokens")
            )
        self.ended = True


def responses_items(payloads: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return payloads[-1]["response"]["output"]


# -- the validators reject broken streams -------------------------------------


ANTHROPIC_OK = fixture_body("anthropic/message_stream")


def _events(body: bytes) -> list[bytes]:
    return [block + b"\n\n" for block in body.split(b"\n\n") if block]


def test_anthropic_validator_accepts_recorded_streams() -> None:
    """The validator accepts both recorded Anthropic streams."""
    assert validate_anthropic_stream(ANTHROPIC_OK)
    assert validate_anthropic_stream(fixture_body("anthropic/message_stream_tool_use"))


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda events: events[:-1], id="unterminated"),
        pytest.param(
            lambda events: [events[0], events[3]],
            id="early-delta",
        ),
        pytest.param(
            lambda events: events[:5] + events[6:],
            id="open-block",
        ),
        pytest.param(lambda events: events[:1] + events, id="double-start"),
    ],
)
def test_anthropic_validator_rejects_broken_order(edit: Any) -> None:
    """The validator rejects streams that break an event order rule."""
    broken = b"".join(edit(_events(ANTHROPIC_OK)))
    with pytest.raises(StreamInvalid):
        validate_anthropic_stream(broken)


def test_chat_validator_rejects_missing_done() -> None:
    """The chat validator rejects a stream that ends without [DONE]."""
    body = fixture_body("openai/chat_completion_stream")
    with pytest.raises(StreamInvalid):
        validate_chat_stream(body.replace(b"data: [DONE]\n\n", b""))


def test_chat_validator_rejects_second_done() -> None:
    """The chat validator rejects a second [DONE]."""
    body = fixture_body("openai/chat_completion_stream")
    with pytest.raises(StreamInvalid):
        validate_chat_stream(body + b"data: [DONE]\n\n")


def test_responses_validator_accepts_recorded_stream() -> None:
    """The validator accepts the recorded Responses stream with sequence numbers."""
    payloads = validate_responses_stream(
        fixture_body("openai/responses_stream_reasoning")
    )
    assert payloads[-1]["type"] == "response.completed"


def test_responses_validator_rejects_gap_in_sequence() -> None:
    """The Responses validator rejects a skipped sequence_number."""
    events = _events(fixture_body("openai/responses_stream_reasoning"))
    with pytest.raises(StreamInvalid):
        validate_responses_stream(b"".join(events[:2] + events[3:]))


# -- translation_for and FIELD_RULES ------------------------------------------


def test_translation_for_same_api_is_none() -> None:
    """Equal client and upstream APIs need no translation."""
    assert translation_for("openai_chat", "openai_chat") is None


@pytest.mark.parametrize(("client", "upstream"), sorted(SUPPORTED_PAIRS))
def test_translation_for_supported_pair(client: str, upstream: str) -> None:
    """Each supported pair gives a translation naming its APIs and path."""
    translation = translation_for(client, upstream)
    assert translation is not None
    assert translation.client_api == client
    assert translation.upstream_api == upstream
    assert (
        translation.upstream_path
        == {
            "openai_chat": "/v1/chat/completions",
            "anthropic_messages": "/v1/messages",
            "bedrock_converse": "/model/{modelId}/converse",
        }[upstream]
    )


def test_translation_for_new_object_per_call() -> None:
    """Each call returns a fresh object, since request() records state."""
    first = translation_for("openai_chat", "anthropic_messages")
    second = translation_for("openai_chat", "anthropic_messages")
    assert first is not second


def test_translation_for_unsupported_pair_raises() -> None:
    """A pair without a translation raises ValueError listing the supported ones."""
    with pytest.raises(ValueError, match="Supported pairs"):
        translation_for("anthropic_messages", "openai_responses")


@pytest.mark.parametrize("pair", sorted(FIELD_RULES))
def test_field_rules_have_reasons(pair: tuple[str, str]) -> None:
    """Every field rule names a field, a known action and a reason sentence."""
    for rule in FIELD_RULES[pair]:
        assert rule.field
        assert rule.action in ("dropped", "changed", "rejected")
        assert rule.reason.endswith(".")


def test_field_rules_cover_every_pair() -> None:
    """FIELD_RULES has an entry for each supported pair."""
    assert set(FIELD_RULES) == set(SUPPORTED_PAIRS)


# -- helpers ------------------------------------------------------------------


def test_derive_id_is_deterministic() -> None:
    """The same parts give the same id, other parts another id."""
    assert derive_id("msg_", "chatcmpl-1") == derive_id("msg_", "chatcmpl-1")
    assert derive_id("msg_", "chatcmpl-1") != derive_id("msg_", "chatcmpl-2")
    assert derive_id("msg_", "x").startswith("msg_")


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        pytest.param('{"a": 1}', {"a": 1}, id="object"),
        pytest.param("", {}, id="empty"),
        pytest.param("  ", {}, id="blank"),
        pytest.param(None, {}, id="none"),
        pytest.param('{"a": ', {"_raw": '{"a": '}, id="invalid-json"),
        pytest.param("[1, 2]", {"_raw": "[1, 2]"}, id="not-an-object"),
    ],
)
def test_parse_arguments(arguments: Any, expected: dict[str, Any]) -> None:
    """Arguments parse to an object, or are kept whole under _raw."""
    assert parse_arguments(arguments) == expected


def test_dump_arguments_undoes_raw() -> None:
    """Arguments kept under _raw are sent back exactly as received."""
    assert dump_arguments(parse_arguments('{"a": ')) == '{"a": '


def test_parse_data_url() -> None:
    """A base64 data URL splits into media type and data; others give None."""
    assert parse_data_url("data:image/png;base64,AAAA") == ("image/png", "AAAA")
    assert parse_data_url("data:text/plain,hello") is None
    assert parse_data_url("https://example.com/a.png") is None


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("gpt-5", True),
        ("gpt-5-mini", True),
        ("o3", True),
        ("o4-mini", True),
        ("gpt-oss:20b", True),
        ("openai/gpt-oss-120b", True),
        ("gpt-4o", False),
        ("llama3.1:8b", False),
        ("qwen3:8b", False),
        ("o3x", False),
    ],
)
def test_takes_reasoning_effort(model: str, expected: bool) -> None:
    """Only the OpenAI reasoning model families take reasoning_effort."""
    assert takes_reasoning_effort(model) is expected


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        pytest.param(
            {"error": {"message": "bad key", "type": "x"}}, "bad key", id="openai"
        ),
        pytest.param(
            {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}},
            "busy",
            id="anthropic",
        ),
        pytest.param(
            {"error": "model 'x' not found"}, "model 'x' not found", id="ollama"
        ),
        pytest.param({"detail": "Not Found"}, "Not Found", id="fastapi"),
        pytest.param("upstream connect error\n", "upstream connect error", id="text"),
        pytest.param(b"plain bytes", "plain bytes", id="bytes"),
    ],
)
def test_error_message_any_shape(document: object, expected: str) -> None:
    """The message is found in every common error body shape."""
    assert error_message(502, document) == expected


def test_error_message_empty_body_names_status() -> None:
    """An empty body gives a message with the HTTP status."""
    assert "HTTP 503" in error_message(503, "")


def test_error_message_long_text_is_cut() -> None:
    """An HTML error page is cut to MAX_MESSAGE_CHARS."""
    message = error_message(502, "x" * (MAX_MESSAGE_CHARS * 2))
    assert len(message) == MAX_MESSAGE_CHARS
    assert message.endswith("...")


def test_error_type_only_from_error_object() -> None:
    """The upstream's error type is read only from an error object."""
    assert error_type({"error": {"type": "rate_limit_error"}}) == "rate_limit_error"
    assert error_type({"error": "text"}) is None
    assert error_type("text") is None


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (413, "request_too_large"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (503, "overloaded_error"),
        (529, "overloaded_error"),
        (418, "invalid_request_error"),
    ],
)
def test_anthropic_error_type_by_status(status: int, expected: str) -> None:
    """HTTP statuses map to the Anthropic error types clients check."""
    assert anthropic_error_type(status) == expected


def test_invalid_request_names_field() -> None:
    """Errors of the request checks name the field and the bad value."""
    translation = translation_for("anthropic_messages", "openai_chat")
    with pytest.raises(
        InvalidRequestError, match=r"max_tokens must be a positive integer, got 0"
    ):
        translation.request(
            {
                "model": "m",
                "max_tokens": 0,
                "messages": [{"role": "user", "content": "x"}],
            },
            model="m",
        )
