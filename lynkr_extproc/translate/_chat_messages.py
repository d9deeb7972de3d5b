"""Reading Chat Completions messages into another API's content blocks.

Chat -> Anthropic Messages and Chat -> Bedrock Converse walk the same
messages with the same checks and error messages, and differ only in the
blocks they build. A `Blocks` subclass builds those blocks; the functions
here do the walking and the checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import InvalidRequestError
from ._common import parse_arguments, require_dict, require_list, require_str, unsupported

SYSTEM_ROLES = ("system", "developer")


@dataclass
class Conversation:
    """Upstream messages being built, merging consecutive same-role turns."""

    system: list[dict[str, Any]]
    messages: list[dict[str, Any]]

    def add(self, role: str, blocks: list[dict[str, Any]]) -> None:
        if not blocks:
            return
        if self.messages and self.messages[-1]["role"] == role:
            self.messages[-1]["content"].extend(blocks)
        else:
            self.messages.append({"role": role, "content": list(blocks)})


class Blocks:
    """The content blocks of one upstream API."""

    upstream = ""
    """The upstream API's name in error messages, such as "Anthropic Messages"."""
    short_name = ""
    """The upstream's name in a sentence, such as "Anthropic"."""

    def text(self, text: str) -> dict[str, Any]:
        raise NotImplementedError

    def image(self, part: dict[str, Any], path: str) -> dict[str, Any]:
        raise NotImplementedError

    def document(self, part: dict[str, Any], path: str, position: int) -> dict[str, Any]:
        """Build a document block; `position` is its index among the message's blocks."""
        raise NotImplementedError

    def tool_use(self, call_id: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def tool_result(self, call_id: str, content: list[dict[str, Any]]) -> dict[str, Any]:
        """Build a tool result block; `content` holds its text blocks, maybe none."""
        raise NotImplementedError


def read_conversation(body: dict[str, Any], blocks: Blocks, conversation: Conversation) -> Conversation:
    """Fill `conversation` from the request's messages; system messages go to its system."""
    entries = require_list(body.get("messages"), "messages")
    for index, message in enumerate(entries):
        path = f"messages[{index}]"
        message = require_dict(message, path)
        role = message.get("role")
        if role in SYSTEM_ROLES:
            conversation.system.extend(text_blocks(message.get("content"), path, role, blocks))
        elif role == "user":
            conversation.add("user", _user_blocks(message.get("content"), path, blocks))
        elif role == "assistant":
            conversation.add("assistant", _assistant_blocks(message, path, blocks))
        elif role == "tool":
            conversation.add("user", [_tool_result(message, path, blocks)])
        elif role == "function":
            raise unsupported(
                f"{path}.role",
                "a deprecated function message",
                blocks.upstream,
                "send tool messages",
            )
        else:
            raise InvalidRequestError(
                f"{path}.role must be system, developer, user, assistant or tool, "
                f"got {role!r}"
            )
    if not conversation.messages and conversation.system:
        conversation.add("user", conversation.system)
        conversation.system = []
    if not conversation.messages:
        raise InvalidRequestError(
            "messages has no message with text or other content, but "
            f"{blocks.short_name} requires at least one"
        )
    return conversation


def reject_unsupported(body: dict[str, Any], upstream: str) -> None:
    """Raise for the Chat Completions fields that no upstream of these translations has."""
    n = body.get("n")
    if n is not None and n != 1:
        raise unsupported(
            "n", f"n={n!r}", upstream, "send n=1 and repeat the request for more"
        )
    if body.get("functions") or body.get("function_call"):
        field = "functions" if body.get("functions") else "function_call"
        raise unsupported(field, "deprecated function calling", upstream, "send tools")
    modalities = body.get("modalities")
    if body.get("audio") or (isinstance(modalities, list) and "audio" in modalities):
        field = "audio" if body.get("audio") else "modalities"
        raise unsupported(field, "audio output", upstream, "request text output only")
    if body.get("web_search_options") is not None:
        raise unsupported(
            "web_search_options",
            "OpenAI web search",
            upstream,
            "remove web_search_options or route to an OpenAI tier",
        )


def parts(content: Any, path: str) -> list[dict[str, Any]]:
    """Return message content as a list of parts, a string as one text part."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    found = require_list(content, f"{path}.content", allow_empty=True)
    for index, part in enumerate(found):
        require_dict(part, f"{path}.content[{index}]")
    return found


def text_blocks(content: Any, path: str, role: str, blocks: Blocks) -> list[dict[str, Any]]:
    """Return the text of system, developer or tool content as text blocks.

    Both upstreams reject empty text blocks, so empty text is left out.
    """
    built = []
    for index, part in enumerate(parts(content, path)):
        if part.get("type") != "text":
            raise unsupported(
                f"{path}.content[{index}].type",
                f"a {part.get('type')!r} part in a {role} message",
                blocks.upstream,
                "send text parts",
            )
        text = require_str(part.get("text"), f"{path}.content[{index}].text")
        if text:
            built.append(blocks.text(text))
    return built


def _user_blocks(content: Any, path: str, blocks: Blocks) -> list[dict[str, Any]]:
    built = []
    for index, part in enumerate(parts(content, path)):
        part_path = f"{path}.content[{index}]"
        kind = part.get("type")
        if kind == "text":
            text = require_str(part.get("text"), f"{part_path}.text")
            if text:
                built.append(blocks.text(text))
        elif kind == "image_url":
            built.append(blocks.image(part, part_path))
        elif kind == "file":
            built.append(blocks.document(part, part_path, len(built)))
        else:
            raise unsupported(
                f"{part_path}.type",
                f"a {kind!r} content part",
                blocks.upstream,
                "send text, image_url or file parts",
            )
    return built


def _assistant_blocks(message: dict[str, Any], path: str, blocks: Blocks) -> list[dict[str, Any]]:
    built = []
    for index, part in enumerate(parts(message.get("content"), path)):
        part_path = f"{path}.content[{index}]"
        kind = part.get("type")
        if kind not in ("text", "refusal"):
            raise unsupported(
                f"{part_path}.type",
                f"a {kind!r} part in an assistant message",
                blocks.upstream,
                "send text parts",
            )
        text = require_str(part.get(kind), f"{part_path}.{kind}")
        if text:
            built.append(blocks.text(text))
    refusal = message.get("refusal")
    if isinstance(refusal, str) and refusal:
        built.append(blocks.text(refusal))
    if message.get("function_call"):
        raise unsupported(
            f"{path}.function_call",
            "a deprecated function_call",
            blocks.upstream,
            "send tool_calls",
        )
    calls = message.get("tool_calls")
    if calls is not None:
        for index, call in enumerate(require_list(calls, f"{path}.tool_calls", allow_empty=True)):
            built.append(_tool_use(call, f"{path}.tool_calls[{index}]", blocks))
    return built


def _tool_use(call: Any, path: str, blocks: Blocks) -> dict[str, Any]:
    call = require_dict(call, path)
    if call.get("type", "function") != "function":
        raise unsupported(
            f"{path}.type",
            f"a {call.get('type')!r} tool call",
            blocks.upstream,
            "send function tool calls",
        )
    function = require_dict(call.get("function"), f"{path}.function")
    return blocks.tool_use(
        require_str(call.get("id"), f"{path}.id"),
        require_str(function.get("name"), f"{path}.function.name"),
        parse_arguments(function.get("arguments")),
    )


def _tool_result(message: dict[str, Any], path: str, blocks: Blocks) -> dict[str, Any]:
    call_id = require_str(message.get("tool_call_id"), f"{path}.tool_call_id")
    return blocks.tool_result(call_id, text_blocks(message.get("content"), path, "tool", blocks))
