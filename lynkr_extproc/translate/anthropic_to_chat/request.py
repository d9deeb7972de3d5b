"""Anthropic Messages request -> OpenAI Chat Completions request.

The upstream body is built field by field, so a client field that this
module does not read never reaches the upstream.
"""

from __future__ import annotations

import logging
from typing import Any

from ...errors import InvalidRequestError
from .._common import (
    FieldRule,
    dump_arguments,
    require_dict,
    require_list,
    require_number,
    require_positive_int,
    require_str,
    unsupported,
)

logger = logging.getLogger(__name__)

UPSTREAM = "OpenAI Chat Completions"

FIELD_RULES: tuple[FieldRule, ...] = (
    FieldRule(
        "thinking",
        "dropped",
        "Chat Completions has no token budget for thinking. Its nearest "
        "control, reasoning_effort, is defined for reasoning models only, "
        "and a token budget gives no low, medium or high level. The chat "
        "model thinks as its server configures it.",
    ),
    FieldRule(
        "messages[].content[] of type thinking and redacted_thinking",
        "dropped",
        "Their signatures can be checked only by Anthropic, and a chat "
        "model cannot read them.",
    ),
    FieldRule(
        "messages[].content[] of type server_tool_use and *_tool_result "
        "(web_search_tool_result and the like)",
        "dropped",
        "Calls that Anthropic's servers ran, with their results, in the same "
        "assistant turn. The chat upstream has no such tools, and the pair "
        "is self-contained, so dropping both keeps the conversation valid.",
    ),
    FieldRule(
        "context_management",
        "dropped",
        "Anthropic edits the context on its servers (clearing old tool "
        "results), but the chat upstream receives the whole conversation.",
    ),
    FieldRule(
        "output_config.effort",
        "dropped",
        "Effort bounds Claude's total token spend, and Chat Completions has no "
        "equivalent that every chat model accepts.",
    ),
    FieldRule(
        "cache_control (top level, on system blocks, content blocks and tools)",
        "dropped",
        "Prompt caching marks are Anthropic's, and chat upstreams cache "
        "prefixes on their own, if at all.",
    ),
    FieldRule("top_k", "dropped", "Chat Completions has no top_k."),
    FieldRule(
        "service_tier",
        "dropped",
        "Anthropic's tier names (auto, standard_only) mean nothing to a chat upstream.",
    ),
    FieldRule(
        "metadata (keys other than user_id)",
        "dropped",
        "Anthropic defines only user_id, which becomes `user`.",
    ),
    FieldRule(
        "tools[].strict, tools[].defer_loading, tools[].input_examples, "
        "tools[].allowed_callers",
        "dropped",
        "Anthropic tool options with no Chat Completions counterpart. The "
        "tool itself is sent.",
    ),
    FieldRule(
        "tools[] of a server tool type (web_search_*, bash_*, "
        "text_editor_*, code_execution_*, computer_*, ...)",
        "rejected",
        "Anthropic runs these tools on its servers, which a chat upstream cannot.",
    ),
    FieldRule(
        "mcp_servers",
        "rejected",
        "Anthropic's servers call these MCP servers, which a chat upstream cannot.",
    ),
    FieldRule(
        "container",
        "rejected",
        "Refers to a code-execution container kept on Anthropic's servers.",
    ),
    FieldRule(
        "messages[].content[] image or document with source type file",
        "rejected",
        "A file_id refers to Anthropic's Files API storage.",
    ),
    FieldRule(
        "messages[].content[] document with a PDF source",
        "rejected",
        "The chat upstreams of this pair take no PDF input.",
    ),
    FieldRule(
        "output_config.format of a type other than json_schema",
        "rejected",
        "Only a JSON schema has a Chat Completions counterpart "
        "(response_format json_schema).",
    ),
)

_RESPONSE_SCHEMA_NAME = "output"
"""Chat Completions requires a name for a JSON schema, and Anthropic sends none."""

_HANDLED_FIELDS = {
    "model",
    "messages",
    "system",
    "max_tokens",
    "temperature",
    "top_p",
    "stop_sequences",
    "tools",
    "tool_choice",
    "output_config",
    "output_format",
    "metadata",
    "stream",
    "mcp_servers",
    "container",
}
"""Top-level fields read here. Any other field is left out and logged at debug."""
_SERVER_RESULT_SUFFIX = "_tool_result"


def translate_request(body: dict[str, Any], *, model: str) -> dict[str, Any]:
    """Translate an Anthropic Messages request into a Chat Completions request."""
    _reject_server_state(body)
    upstream: dict[str, Any] = {"model": model}
    upstream["messages"] = _messages(body)
    _copy_sampling(body, upstream)
    if "tools" in body:
        _tools(body, upstream)
    _response_format(body.get("output_config"), upstream, "output_config")
    if body.get("output_format") is not None:
        _response_format({"format": body["output_format"]}, upstream, "output_format")
    user_id = _user_id(body.get("metadata"))
    if user_id:
        upstream["user"] = user_id
    if body.get("stream") is True:
        upstream["stream"] = True
        upstream["stream_options"] = {"include_usage": True}
    for field in sorted(set(body) - _HANDLED_FIELDS):
        logger.debug("translate: dropped field %s for a chat upstream", field)
    return upstream


def _reject_server_state(body: dict[str, Any]) -> None:
    if body.get("mcp_servers"):
        raise unsupported(
            "mcp_servers",
            "MCP servers run by Anthropic",
            UPSTREAM,
            "remove mcp_servers or route to an Anthropic tier",
        )
    if body.get("container") is not None:
        raise unsupported(
            "container",
            "an Anthropic code-execution container",
            UPSTREAM,
            "remove container or route to an Anthropic tier",
        )


def _copy_sampling(body: dict[str, Any], upstream: dict[str, Any]) -> None:
    if body.get("max_tokens") is not None:
        upstream["max_tokens"] = require_positive_int(body["max_tokens"], "max_tokens")
    for field in ("temperature", "top_p"):
        if body.get(field) is not None:
            upstream[field] = require_number(body[field], field)
    stop = body.get("stop_sequences")
    if stop:
        sequences = require_list(stop, "stop_sequences")
        for index, sequence in enumerate(sequences):
            require_str(sequence, f"stop_sequences[{index}]")
        # NOTE: OpenAI's API reference allows at most 4 stop sequences. The
        # list is sent whole and unchecked, since local servers may take more.
        upstream["stop"] = list(sequences)


def _user_id(metadata: Any) -> str | None:
    if not isinstance(metadata, dict):
        return None
    user_id = metadata.get("user_id")
    return user_id if isinstance(user_id, str) and user_id else None


# -- messages ---------------------------------------------------------------


def _messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    system = _system_text(body.get("system"), "system")
    if system:
        messages.append({"role": "system", "content": system})
    entries = require_list(body.get("messages"), "messages")
    for index, message in enumerate(entries):
        path = f"messages[{index}]"
        message = require_dict(message, path)
        role = message.get("role")
        content = message.get("content")
        if role == "user":
            messages.extend(_user_messages(content, path))
        elif role == "assistant":
            messages.extend(_assistant_messages(content, path))
        elif role == "system":
            text = _system_text(content, f"{path}.content")
            messages.append({"role": "system", "content": text})
        else:
            raise _invalid_role(role, path)
    return messages


def _invalid_role(role: Any, path: str) -> InvalidRequestError:
    return InvalidRequestError(
        f'{path}.role must be "user", "assistant" or "system", got {role!r}'
    )


def _system_text(system: Any, path: str) -> str:
    """Join a system prompt given as a string or as text blocks."""
    if system is None:
        return ""
    if isinstance(system, str):
        return system
    texts = []
    for index, block in enumerate(require_list(system, path, allow_empty=True)):
        block = require_dict(block, f"{path}[{index}]")
        if block.get("type") != "text":
            raise unsupported(
                f"{path}[{index}]",
                f"a {block.get('type')!r} block in a system prompt",
                UPSTREAM,
                "send the system prompt as text",
            )
        texts.append(require_str(block.get("text"), f"{path}[{index}].text"))
    return "\n".join(texts)


def _blocks(content: Any, path: str) -> list[dict[str, Any]]:
    """Return message content as a list of blocks, a string as one text block."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    blocks = require_list(content, f"{path}.content", allow_empty=True)
    for index, block in enumerate(blocks):
        require_dict(block, f"{path}.content[{index}]")
    return blocks


def _user_messages(content: Any, path: str) -> list[dict[str, Any]]:
    """Translate one user message into tool messages, then one user message.

    Chat Completions requires the tool messages right after the assistant
    message that made the calls, which Anthropic also requires of the
    tool_result blocks. The other content, images returned by tools
    included, keeps its order in the user message after them.
    """
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    tool_messages: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for index, block in enumerate(_blocks(content, path)):
        block_path = f"{path}.content[{index}]"
        if block.get("type") == "tool_result":
            message, images = _tool_result(block, block_path)
            tool_messages.append(message)
            parts.extend(images)
        else:
            parts.extend(_user_parts(block, block_path))
    messages = tool_messages
    if parts:
        messages.append({"role": "user", "content": _chat_content(parts)})
    return messages


def _chat_content(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """Join text-only content into one string, which every chat server accepts."""
    if all(part["type"] == "text" for part in parts):
        return "\n".join(part["text"] for part in parts)
    return parts


def _user_parts(block: dict[str, Any], path: str) -> list[dict[str, Any]]:
    kind = block.get("type")
    if kind == "text":
        return [
            {"type": "text", "text": require_str(block.get("text"), f"{path}.text")}
        ]
    if kind == "image":
        return [_image_part(block, path)]
    if kind == "document":
        return _document_parts(block, path)
    if kind in ("thinking", "redacted_thinking"):
        return []
    raise unsupported(
        f"{path}.type",
        f"a {kind!r} block in a user message",
        UPSTREAM,
        "send text, image or text document blocks",
    )


def _image_part(block: dict[str, Any], path: str) -> dict[str, Any]:
    source = require_dict(block.get("source"), f"{path}.source")
    kind = source.get("type")
    if kind == "base64":
        media_type = require_str(source.get("media_type"), f"{path}.source.media_type")
        data = require_str(source.get("data"), f"{path}.source.data")
        url = f"data:{media_type};base64,{data}"
    elif kind == "url":
        url = require_str(source.get("url"), f"{path}.source.url")
    else:
        raise unsupported(
            f"{path}.source.type",
            f"an image source of type {kind!r}",
            UPSTREAM,
            "send the image as base64 data or a URL",
        )
    return {"type": "image_url", "image_url": {"url": url}}


def _document_parts(block: dict[str, Any], path: str) -> list[dict[str, Any]]:
    """Turn a plain-text document into text parts, rejecting PDF and file sources."""
    source = require_dict(block.get("source"), f"{path}.source")
    kind = source.get("type")
    if kind == "text":
        text = require_str(source.get("data"), f"{path}.source.data")
        return [{"type": "text", "text": _titled(block, text)}]
    if kind == "content":
        content = source.get("content")
        if isinstance(content, str):
            return [{"type": "text", "text": _titled(block, content)}]
        parts = []
        for index, inner in enumerate(_blocks(content, f"{path}.source")):
            parts.extend(_user_parts(inner, f"{path}.source.content[{index}]"))
        return parts
    raise unsupported(
        f"{path}.source.type",
        f"a document source of type {kind!r}",
        UPSTREAM,
        "send the document's text as a text block",
    )


def _titled(block: dict[str, Any], text: str) -> str:
    title = block.get("title")
    return f"{title}\n\n{text}" if isinstance(title, str) and title else text


def _tool_result(
    block: dict[str, Any], path: str
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Return the tool message of a tool_result and the image parts it carried."""
    tool_use_id = require_str(block.get("tool_use_id"), f"{path}.tool_use_id")
    content = block.get("content")
    texts: list[str] = []
    images: list[dict[str, Any]] = []
    if content is not None:
        for index, inner in enumerate(_blocks(content, path)):
            for part in _user_parts(inner, f"{path}.content[{index}]"):
                if part["type"] == "text":
                    texts.append(part["text"])
                else:
                    images.append(part)
    text = "\n".join(texts)
    if images:
        label = f"The result of tool call {tool_use_id} includes these images:"
        images.insert(0, {"type": "text", "text": label})
    if block.get("is_error") is True:
        text = f"The tool call failed:\n{text}" if text else "The tool call failed."
    return {"role": "tool", "tool_call_id": tool_use_id, "content": text}, images


def _assistant_messages(content: Any, path: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"role": "assistant", "content": content}]
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for index, block in enumerate(_blocks(content, path)):
        block_path = f"{path}.content[{index}]"
        kind = block.get("type")
        if kind == "text":
            texts.append(require_str(block.get("text"), f"{block_path}.text"))
        elif kind == "tool_use":
            calls.append(_tool_call(block, block_path))
        elif _is_dropped_assistant_block(kind):
            continue
        else:
            raise unsupported(
                f"{block_path}.type",
                f"a {kind!r} block in an assistant message",
                UPSTREAM,
                "send text and tool_use blocks",
            )
    if not texts and not calls:
        return []
    message: dict[str, Any] = {"role": "assistant", "content": "\n".join(texts)}
    if calls:
        message["content"] = message["content"] or None
        message["tool_calls"] = calls
    return [message]


def _is_dropped_assistant_block(kind: Any) -> bool:
    """Return True for thinking blocks and blocks of Anthropic server tools."""
    if kind in ("thinking", "redacted_thinking", "server_tool_use"):
        return True
    return isinstance(kind, str) and kind.endswith(_SERVER_RESULT_SUFFIX)


def _tool_call(block: dict[str, Any], path: str) -> dict[str, Any]:
    return {
        "id": require_str(block.get("id"), f"{path}.id"),
        "type": "function",
        "function": {
            "name": require_str(block.get("name"), f"{path}.name"),
            "arguments": dump_arguments(block.get("input")),
        },
    }


# -- tools and output format ------------------------------------------------


def _tools(body: dict[str, Any], upstream: dict[str, Any]) -> None:
    tools = require_list(body["tools"], "tools", allow_empty=True)
    functions = []
    for index, tool in enumerate(tools):
        path = f"tools[{index}]"
        tool = require_dict(tool, path)
        kind = tool.get("type")
        if kind not in (None, "custom"):
            raise unsupported(
                f"{path}.type",
                f"the Anthropic server tool {kind!r}",
                UPSTREAM,
                "remove the tool or route to an Anthropic tier",
            )
        function: dict[str, Any] = {
            "name": require_str(tool.get("name"), f"{path}.name")
        }
        if isinstance(tool.get("description"), str):
            function["description"] = tool["description"]
        schema = tool.get("input_schema")
        function["parameters"] = require_dict(schema, f"{path}.input_schema")
        functions.append({"type": "function", "function": function})
    if not functions:
        return
    upstream["tools"] = functions
    choice = body.get("tool_choice")
    if choice is None:
        return
    choice = require_dict(choice, "tool_choice")
    upstream["tool_choice"] = _tool_choice(choice)
    if choice.get("disable_parallel_tool_use") is True:
        upstream["parallel_tool_calls"] = False


def _tool_choice(choice: dict[str, Any]) -> str | dict[str, Any]:
    kind = choice.get("type")
    if kind in ("auto", "none"):
        return kind
    if kind == "any":
        return "required"
    if kind == "tool":
        name = require_str(choice.get("name"), "tool_choice.name")
        return {"type": "function", "function": {"name": name}}
    raise InvalidRequestError(
        f"tool_choice.type must be auto, any, tool or none, got {kind!r}"
    )


def _response_format(config: Any, upstream: dict[str, Any], path: str) -> None:
    """Turn a JSON schema output format into response_format, dropping effort."""
    if config is None:
        return
    config = require_dict(config, path)
    output_format = config.get("format")
    if output_format is None:
        return
    output_format = require_dict(output_format, f"{path}.format")
    kind = output_format.get("type")
    if kind != "json_schema":
        raise unsupported(
            f"{path}.format.type",
            f"an output format of type {kind!r}",
            UPSTREAM,
            "use a json_schema format",
        )
    schema = require_dict(output_format.get("schema"), f"{path}.format.schema")
    upstream["response_format"] = {
        "type": "json_schema",
        "json_schema": {"name": _RESPONSE_SCHEMA_NAME, "schema": schema},
    }
