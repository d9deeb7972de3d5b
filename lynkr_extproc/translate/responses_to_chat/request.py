"""OpenAI Responses request -> OpenAI Chat Completions request.

The upstream body is built field by field, so a client field that this
module does not read never reaches the upstream.

Custom (free-form) tools, which Codex uses for apply_patch with GPT-5
models, become functions with one string parameter, CUSTOM_INPUT. The
response translation turns calls of those functions back into
custom_tool_call items, using the names that RequestContext records.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from ...errors import InvalidRequestError
from .._common import (
    FieldRule,
    dump_json,
    require_dict,
    require_list,
    require_number,
    require_positive_int,
    require_str,
    takes_reasoning_effort,
    unsupported,
)

logger = logging.getLogger(__name__)

UPSTREAM = "OpenAI Chat Completions"

CUSTOM_INPUT = "input"
"""The one parameter of the function that replaces a custom tool upstream."""

FIELD_RULES: tuple[FieldRule, ...] = (
    FieldRule(
        "previous_response_id, conversation",
        "rejected",
        "They refer to conversation state kept by OpenAI, and a chat upstream "
        "has none. Send the whole conversation in input.",
    ),
    FieldRule(
        "background",
        "rejected",
        "A background response is polled later from OpenAI's servers.",
    ),
    FieldRule("prompt", "rejected", "Refers to a prompt template stored by OpenAI."),
    FieldRule(
        "tools[] of a hosted type (web_search, file_search, code_interpreter, "
        "computer_use_preview, image_generation, mcp, local_shell, ...)",
        "rejected",
        "OpenAI runs these tools or gives their calls a special item type, "
        "but a chat upstream has only functions.",
    ),
    FieldRule(
        "tool_choice allowed_tools or a hosted tool",
        "rejected",
        "Chat Completions can force one function only.",
    ),
    FieldRule(
        "input[] of type item_reference",
        "rejected",
        "Refers to an item stored by OpenAI.",
    ),
    FieldRule(
        "input[] of a hosted tool call type (web_search_call, "
        "local_shell_call, computer_call, ...)",
        "rejected",
        "Chat Completions has no item for these calls.",
    ),
    FieldRule(
        "input[].content[] input_file, input_image with a file_id",
        "rejected",
        "A file_id refers to OpenAI's file storage, and the chat upstreams "
        "of this pair take no file input.",
    ),
    FieldRule(
        "input[] of type reasoning",
        "dropped",
        "Reasoning items carry encrypted content that only OpenAI can read.",
    ),
    FieldRule(
        "reasoning",
        "changed",
        "reasoning.effort becomes reasoning_effort for the reasoning models "
        "that OpenAI defines it for (o1, o3, o4, gpt-5, gpt-oss) and is "
        "dropped for other models. reasoning.summary is dropped because chat "
        "returns no summaries.",
    ),
    FieldRule(
        "tools[] of type custom with a grammar format",
        "changed",
        "Sent as a function with one string parameter. The grammar is "
        "dropped because chat upstreams constrain arguments by JSON schema "
        "only.",
    ),
    FieldRule(
        "include",
        "dropped",
        "Asks for extra output data (encrypted reasoning, logprobs) that a "
        "chat upstream does not return.",
    ),
    FieldRule(
        "store",
        "dropped",
        "A translated response is never stored, so no later request can refer to it.",
    ),
    FieldRule(
        "prompt_cache_key, service_tier, metadata, truncation, max_tool_calls, "
        "top_logprobs, stream_options, text.verbosity",
        "dropped",
        "OpenAI platform options that the chat upstreams of this pair do not take.",
    ),
)

_HANDLED_FIELDS = {
    "model",
    "input",
    "instructions",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "max_output_tokens",
    "temperature",
    "top_p",
    "reasoning",
    "text",
    "user",
    "safety_identifier",
    "stream",
    "previous_response_id",
    "conversation",
    "background",
    "prompt",
}
"""Top-level fields read here. Any other field is left out and logged at debug."""

_ECHO_FIELDS = (
    "instructions",
    "max_output_tokens",
    "parallel_tool_calls",
    "reasoning",
    "temperature",
    "text",
    "tool_choice",
    "tools",
    "top_p",
    "user",
    "metadata",
    "truncation",
    "previous_response_id",
)


@dataclass
class RequestContext:
    """Facts about the request that the response translation needs."""

    custom_tools: frozenset[str] = frozenset()
    """Names of the request's custom tools, sent upstream as functions."""
    echo: dict[str, Any] = field(default_factory=dict)
    """Request fields that a Responses `response` object repeats."""


@dataclass
class _Messages:
    """Chat messages being built from Responses input items."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    tool_images: list[dict[str, Any]] = field(default_factory=list)
    """Image parts of tool outputs, sent in a user message after the tool messages."""

    def add(self, message: dict[str, Any]) -> None:
        if message["role"] != "tool":
            self.flush_images()
        self.messages.append(message)

    def add_call(self, call: dict[str, Any]) -> None:
        """Add a tool call to the last assistant message, or to a new one."""
        self.flush_images()
        last = self.messages[-1] if self.messages else None
        if last is None or last["role"] != "assistant":
            last = {"role": "assistant", "content": None}
            self.messages.append(last)
        last.setdefault("tool_calls", []).append(call)

    def flush_images(self) -> None:
        if self.tool_images:
            self.messages.append({"role": "user", "content": self.tool_images})
            self.tool_images = []


def request_context(body: dict[str, Any]) -> RequestContext:
    """Record the custom tool names and the fields a response repeats."""
    names = set()
    tools = body.get("tools")
    for tool in tools if isinstance(tools, list) else []:
        is_custom = isinstance(tool, dict) and tool.get("type") == "custom"
        if is_custom and isinstance(tool.get("name"), str):
            names.add(tool["name"])
    echo = {name: body[name] for name in _ECHO_FIELDS if name in body}
    return RequestContext(custom_tools=frozenset(names), echo=echo)


def translate_request(body: dict[str, Any], *, model: str) -> dict[str, Any]:
    """Translate a Responses request into a Chat Completions request."""
    _reject_server_state(body)
    upstream: dict[str, Any] = {"model": model, "messages": _messages(body)}
    if body.get("max_output_tokens") is not None:
        upstream["max_tokens"] = require_positive_int(
            body["max_output_tokens"], "max_output_tokens"
        )
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            upstream[name] = require_number(body[name], name)
    _reasoning(body.get("reasoning"), model, upstream)
    _tools(body, upstream)
    _response_format(body.get("text"), upstream)
    user = body.get("user") or body.get("safety_identifier")
    if isinstance(user, str) and user:
        upstream["user"] = user
    if body.get("stream") is True:
        upstream["stream"] = True
        upstream["stream_options"] = {"include_usage": True}
    for name in sorted(set(body) - _HANDLED_FIELDS):
        logger.debug("translate: dropped field %s for a chat upstream", name)
    return upstream


def _reject_server_state(body: dict[str, Any]) -> None:
    for name in ("previous_response_id", "conversation", "prompt"):
        if body.get(name):
            raise unsupported(
                name,
                f"{name} (state kept by OpenAI)",
                UPSTREAM,
                "send the whole conversation in input",
            )
    if body.get("background") is True:
        raise unsupported(
            "background", "a background response", UPSTREAM, "send background false"
        )


def _reasoning(reasoning: Any, model: str, upstream: dict[str, Any]) -> None:
    if not isinstance(reasoning, dict):
        return
    effort = reasoning.get("effort")
    if isinstance(effort, str) and takes_reasoning_effort(model):
        upstream["reasoning_effort"] = effort


# -- input items ------------------------------------------------------------


def _messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    built = _Messages()
    instructions = body.get("instructions")
    if instructions is not None and require_str(instructions, "instructions"):
        built.add({"role": "system", "content": instructions})
    items = body.get("input")
    if isinstance(items, str):
        built.add({"role": "user", "content": items})
        return built.messages
    for index, item in enumerate(require_list(items, "input")):
        _item(require_dict(item, f"input[{index}]"), f"input[{index}]", built)
    built.flush_images()
    return built.messages


def _item(item: dict[str, Any], path: str, built: _Messages) -> None:
    kind = item.get("type", "message")
    if kind == "message":
        built.add(_message(item, path))
    elif kind in ("function_call", "custom_tool_call"):
        built.add_call(_tool_call(item, path))
    elif kind in ("function_call_output", "custom_tool_call_output"):
        _tool_output(item, path, built)
    elif kind == "reasoning":
        return
    elif kind == "item_reference":
        raise unsupported(
            f"{path}.type",
            "an item_reference (an item stored by OpenAI)",
            UPSTREAM,
            "send the item itself",
        )
    else:
        raise unsupported(
            f"{path}.type",
            f"an input item of type {kind!r}",
            UPSTREAM,
            "send message, function_call and function_call_output items",
        )


def _message(item: dict[str, Any], path: str) -> dict[str, Any]:
    role = item.get("role")
    if role not in ("user", "assistant", "system", "developer"):
        raise InvalidRequestError(
            f"{path}.role must be user, assistant, system or developer, got {role!r}"
        )
    chat_role = "system" if role == "developer" else role
    content = item.get("content")
    if isinstance(content, str):
        return {"role": chat_role, "content": content}
    parts = []
    for index, part in enumerate(
        require_list(content, f"{path}.content", allow_empty=True)
    ):
        parts.append(
            _content_part(
                require_dict(part, f"{path}.content[{index}]"),
                f"{path}.content[{index}]",
            )
        )
    if role != "user" and any(part["type"] != "text" for part in parts):
        raise unsupported(
            f"{path}.content",
            f"an image in a {role} message",
            UPSTREAM,
            "send images in user messages",
        )
    if all(part["type"] == "text" for part in parts):
        return {"role": chat_role, "content": "\n".join(part["text"] for part in parts)}
    return {"role": chat_role, "content": parts}


def _content_part(part: dict[str, Any], path: str) -> dict[str, Any]:
    kind = part.get("type")
    if kind in ("input_text", "output_text", "text"):
        return {"type": "text", "text": require_str(part.get("text"), f"{path}.text")}
    if kind == "refusal":
        return {
            "type": "text",
            "text": require_str(part.get("refusal"), f"{path}.refusal"),
        }
    if kind == "input_image":
        url = part.get("image_url")
        if not isinstance(url, str) or not url:
            raise unsupported(
                path,
                "an input_image without an image_url (a file_id)",
                UPSTREAM,
                "send the image as a URL or a base64 data URL",
            )
        image: dict[str, Any] = {"url": url}
        if part.get("detail") in ("low", "high", "auto"):
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    raise unsupported(
        f"{path}.type",
        f"a {kind!r} content part",
        UPSTREAM,
        "send input_text and input_image parts",
    )


def _tool_call(item: dict[str, Any], path: str) -> dict[str, Any]:
    call_id = require_str(item.get("call_id"), f"{path}.call_id")
    name = require_str(item.get("name"), f"{path}.name")
    if item.get("type") == "custom_tool_call":
        tool_input = require_str(item.get("input"), f"{path}.input")
        arguments = dump_json({CUSTOM_INPUT: tool_input})
    else:
        arguments = require_str(item.get("arguments"), f"{path}.arguments")
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": arguments},
    }


def _tool_output(item: dict[str, Any], path: str, built: _Messages) -> None:
    call_id = require_str(item.get("call_id"), f"{path}.call_id")
    output = item.get("output")
    if isinstance(output, str):
        built.add({"role": "tool", "tool_call_id": call_id, "content": output})
        return
    texts = []
    images = []
    for index, part in enumerate(
        require_list(output, f"{path}.output", allow_empty=True)
    ):
        part_path = f"{path}.output[{index}]"
        translated = _content_part(require_dict(part, part_path), part_path)
        if translated["type"] == "text":
            texts.append(translated["text"])
        else:
            images.append(translated)
    built.add({"role": "tool", "tool_call_id": call_id, "content": "\n".join(texts)})
    if images:
        label = f"The output of tool call {call_id} includes these images:"
        built.tool_images.append({"type": "text", "text": label})
        built.tool_images.extend(images)


# -- tools and output format ------------------------------------------------


def _tools(body: dict[str, Any], upstream: dict[str, Any]) -> None:
    tools = body.get("tools")
    if not tools:
        return
    functions = []
    for index, tool in enumerate(require_list(tools, "tools")):
        functions.append(
            _function(require_dict(tool, f"tools[{index}]"), f"tools[{index}]")
        )
    upstream["tools"] = functions
    if body.get("tool_choice") is not None:
        upstream["tool_choice"] = _tool_choice(body["tool_choice"])
    if isinstance(body.get("parallel_tool_calls"), bool):
        upstream["parallel_tool_calls"] = body["parallel_tool_calls"]


def _function(tool: dict[str, Any], path: str) -> dict[str, Any]:
    kind = tool.get("type")
    if kind not in ("function", "custom"):
        raise unsupported(
            f"{path}.type",
            f"the hosted tool {kind!r}",
            UPSTREAM,
            "remove the tool or route to an OpenAI Responses tier",
        )
    function: dict[str, Any] = {"name": require_str(tool.get("name"), f"{path}.name")}
    if isinstance(tool.get("description"), str):
        function["description"] = tool["description"]
    if kind == "custom":
        function["parameters"] = {
            "type": "object",
            "properties": {CUSTOM_INPUT: {"type": "string"}},
            "required": [CUSTOM_INPUT],
        }
        return {"type": "function", "function": function}
    parameters = tool.get("parameters")
    if parameters is None:
        parameters = {"type": "object", "properties": {}}
    function["parameters"] = require_dict(parameters, f"{path}.parameters")
    if isinstance(tool.get("strict"), bool):
        function["strict"] = tool["strict"]
    return {"type": "function", "function": function}


def _tool_choice(choice: Any) -> str | dict[str, Any]:
    if choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") in ("function", "custom"):
        name = require_str(choice.get("name"), "tool_choice.name")
        return {"type": "function", "function": {"name": name}}
    raise unsupported(
        "tool_choice",
        f"the tool choice {choice!r}",
        UPSTREAM,
        "send auto, none, required or a function choice",
    )


def _response_format(text: Any, upstream: dict[str, Any]) -> None:
    if not isinstance(text, dict) or text.get("format") is None:
        return
    output_format = require_dict(text["format"], "text.format")
    kind = output_format.get("type")
    if kind == "text":
        return
    if kind == "json_object":
        upstream["response_format"] = {"type": "json_object"}
        return
    if kind != "json_schema":
        raise unsupported(
            "text.format.type",
            f"an output format of type {kind!r}",
            UPSTREAM,
            "send text, json_object or json_schema",
        )
    json_schema: dict[str, Any] = {
        "name": require_str(output_format.get("name"), "text.format.name"),
        "schema": require_dict(output_format.get("schema"), "text.format.schema"),
    }
    for name in ("description", "strict"):
        if output_format.get(name) is not None:
            json_schema[name] = output_format[name]
    upstream["response_format"] = {"type": "json_schema", "json_schema": json_schema}
