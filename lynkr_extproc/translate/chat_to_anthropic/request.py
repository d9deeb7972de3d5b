"""OpenAI Chat Completions request -> Anthropic Messages request.

The upstream body is built field by field, so a client field that this
module does not read never reaches the upstream.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from .._chat_messages import Blocks, Conversation, read_conversation, reject_unsupported
from .._common import (
    FieldRule,
    parse_data_url,
    require_dict,
    require_list,
    require_number,
    require_positive_int,
    require_str,
    unsupported,
)

logger = logging.getLogger(__name__)

UPSTREAM = "Anthropic Messages"

DEFAULT_MAX_TOKENS = 4096
"""max_tokens sent when the client sets none, since Anthropic requires it.

4096 is the largest output every Claude model accepts (Claude 3 Haiku's
limit), so the default never fails. A client that expects longer output
sets max_completion_tokens or max_tokens.
"""

MAX_TEMPERATURE = 1.0
"""Anthropic's upper temperature bound, where OpenAI's is 2."""

FIELD_RULES: tuple[FieldRule, ...] = (
    FieldRule(
        "n",
        "rejected",
        "Anthropic returns one choice per request.",
    ),
    FieldRule(
        "functions, function_call, messages[] with role function",
        "rejected",
        "The deprecated function-calling form. Clients send tools and "
        "tool_calls instead.",
    ),
    FieldRule(
        "audio, modalities containing audio, messages[].content[] of type input_audio",
        "rejected",
        "Claude takes and returns no audio.",
    ),
    FieldRule(
        "web_search_options",
        "rejected",
        "OpenAI runs this search, and no Anthropic tool in the request replaces it.",
    ),
    FieldRule(
        "tools[] of a type other than function, tool_choice allowed_tools",
        "rejected",
        "Custom (free-form) tools and tool allow-lists have no Anthropic counterpart.",
    ),
    FieldRule(
        "response_format json_object",
        "rejected",
        "Anthropic constrains output to a JSON schema only, so clients send "
        "response_format json_schema.",
    ),
    FieldRule(
        "messages[].content[] file with a file_id, image_url of a non-base64 data URL",
        "rejected",
        "A file_id refers to OpenAI's file storage, which the upstream cannot read.",
    ),
    FieldRule(
        "top_p when temperature is also set",
        "dropped",
        "Claude Opus 4.1, Sonnet 4.5 and later reject a request that sets "
        "both, with the error 'temperature and top_p cannot both be specified "
        "for this model'.",
    ),
    FieldRule(
        "temperature above 1",
        "changed",
        "Lowered to 1, Anthropic's maximum, where OpenAI allows up to 2.",
    ),
    FieldRule(
        "reasoning_effort",
        "dropped",
        "Claude's extended thinking needs a token budget and constrains "
        "temperature, and no budget follows from low, medium or high.",
    ),
    FieldRule(
        "stream_options",
        "dropped",
        "Anthropic streams always carry usage, so include_usage decides only "
        "whether the client stream gets a usage chunk.",
    ),
    FieldRule(
        "frequency_penalty, presence_penalty, logit_bias, seed",
        "dropped",
        "Anthropic has no sampling controls of these kinds.",
    ),
    FieldRule(
        "logprobs, top_logprobs",
        "dropped",
        "Anthropic returns no log probabilities, so the response has none.",
    ),
    FieldRule(
        "store, metadata, service_tier, prompt_cache_key, prediction, verbosity",
        "dropped",
        "OpenAI platform features (stored completions, tiers, cache routing, "
        "predicted outputs) that do not change the answer.",
    ),
    FieldRule(
        "tools[].function.strict",
        "dropped",
        "Anthropic validates tool input against the schema without it.",
    ),
    FieldRule(
        "system and developer messages after the first non-system message",
        "changed",
        "Anthropic takes one system prompt, so every system and developer "
        "message joins it in order and loses its place in the conversation.",
    ),
    FieldRule(
        "system and developer messages of a request with no other message",
        "changed",
        "Sent as the user message: Anthropic requires one, and OpenAI responds "
        "to such a request as if the instructions were the prompt.",
    ),
    FieldRule(
        "messages[].name",
        "dropped",
        "Anthropic messages carry no participant name.",
    ),
)

_TOOL_ID_INVALID = re.compile(r"[^a-zA-Z0-9_-]")
_HANDLED_FIELDS = {
    "model",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "stop",
    "stream",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "user",
    "safety_identifier",
    "response_format",
    "n",
    "functions",
    "function_call",
    "audio",
    "modalities",
    "web_search_options",
}
"""Top-level fields read here. Any other field is left out and logged at debug."""


def anthropic_tool_id(call_id: str) -> str:
    """Return `call_id` with the characters Anthropic rejects in ids replaced.

    Anthropic accepts tool ids of letters, digits, "_" and "-". The same
    mapping applies to tool_calls and tool messages, so pairs still match.
    """
    return _TOOL_ID_INVALID.sub("_", call_id) or "_"


def translate_request(
    body: dict[str, Any], *, model: str, default_max_tokens: int = DEFAULT_MAX_TOKENS
) -> dict[str, Any]:
    """Translate a Chat Completions request into an Anthropic Messages request."""
    reject_unsupported(body, UPSTREAM)
    conversation = read_conversation(body, _BLOCKS, Conversation(system=[], messages=[]))
    upstream: dict[str, Any] = {"model": model, "max_tokens": _max_tokens(body)}
    if upstream["max_tokens"] is None:
        upstream["max_tokens"] = default_max_tokens
    if conversation.system:
        upstream["system"] = _system_value(conversation.system)
    upstream["messages"] = conversation.messages
    _copy_sampling(body, upstream)
    _tools(body, upstream)
    _output_format(body.get("response_format"), upstream)
    user = body.get("safety_identifier") or body.get("user")
    if isinstance(user, str) and user:
        upstream["metadata"] = {"user_id": user}
    if body.get("stream") is True:
        upstream["stream"] = True
    for field in sorted(set(body) - _HANDLED_FIELDS):
        logger.debug("translate: dropped field %s for an Anthropic upstream", field)
    return upstream


def _max_tokens(body: dict[str, Any]) -> int | None:
    for field in ("max_completion_tokens", "max_tokens"):
        if body.get(field) is not None:
            return require_positive_int(body[field], field)
    return None


def _system_value(blocks: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    if len(blocks) == 1:
        return blocks[0]["text"]
    return blocks


def _copy_sampling(body: dict[str, Any], upstream: dict[str, Any]) -> None:
    temperature = body.get("temperature")
    if temperature is not None:
        temperature = require_number(temperature, "temperature")
        upstream["temperature"] = min(temperature, MAX_TEMPERATURE)
    elif body.get("top_p") is not None:
        upstream["top_p"] = require_number(body["top_p"], "top_p")
    stop = body.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    if stop:
        sequences = require_list(stop, "stop")
        for index, sequence in enumerate(sequences):
            require_str(sequence, f"stop[{index}]")
        upstream["stop_sequences"] = list(sequences)


# -- messages ---------------------------------------------------------------


class _AnthropicBlocks(Blocks):
    upstream = UPSTREAM
    short_name = "Anthropic"

    def text(self, text: str) -> dict[str, Any]:
        return {"type": "text", "text": text}

    def image(self, part: dict[str, Any], path: str) -> dict[str, Any]:
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        url = require_str(url, f"{path}.image_url.url")
        if url.startswith("data:"):
            parsed = parse_data_url(url)
            if parsed is None:
                raise unsupported(
                    f"{path}.image_url.url",
                    "a data URL that is not base64",
                    UPSTREAM,
                    "encode the image as base64",
                )
            media_type, data = parsed
            source = {"type": "base64", "media_type": media_type, "data": data}
        else:
            source = {"type": "url", "url": url}
        return {"type": "image", "source": source}

    def document(self, part: dict[str, Any], path: str, position: int) -> dict[str, Any]:
        file = require_dict(part.get("file"), f"{path}.file")
        data_url = file.get("file_data")
        parsed = parse_data_url(data_url) if isinstance(data_url, str) else None
        if parsed is None:
            raise unsupported(
                f"{path}.file",
                "a file without base64 file_data",
                UPSTREAM,
                "send the file's content as a base64 data URL in file_data",
            )
        media_type, data = parsed
        block: dict[str, Any] = {
            "type": "document",
            "source": {"type": "base64", "media_type": media_type, "data": data},
        }
        if isinstance(file.get("filename"), str):
            block["title"] = file["filename"]
        return block

    def tool_use(self, call_id: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        return {"type": "tool_use", "id": anthropic_tool_id(call_id), "name": name, "input": arguments}

    def tool_result(self, call_id: str, content: list[dict[str, Any]]) -> dict[str, Any]:
        block: dict[str, Any] = {"type": "tool_result", "tool_use_id": anthropic_tool_id(call_id)}
        if content:
            block["content"] = content
        return block


_BLOCKS = _AnthropicBlocks()


# -- tools and output format ------------------------------------------------


def _tools(body: dict[str, Any], upstream: dict[str, Any]) -> None:
    tools = body.get("tools")
    if not tools:
        return
    definitions = []
    for index, tool in enumerate(require_list(tools, "tools")):
        path = f"tools[{index}]"
        tool = require_dict(tool, path)
        if tool.get("type") != "function":
            raise unsupported(
                f"{path}.type",
                f"a {tool.get('type')!r} tool",
                UPSTREAM,
                "send function tools",
            )
        function = require_dict(tool.get("function"), f"{path}.function")
        definition: dict[str, Any] = {
            "name": require_str(function.get("name"), f"{path}.function.name"),
        }
        if isinstance(function.get("description"), str):
            definition["description"] = function["description"]
        parameters = function.get("parameters")
        if parameters is None:
            parameters = {"type": "object", "properties": {}}
        definition["input_schema"] = require_dict(
            parameters, f"{path}.function.parameters"
        )
        definitions.append(definition)
    upstream["tools"] = definitions
    choice = _tool_choice(body.get("tool_choice"))
    if body.get("parallel_tool_calls") is False:
        choice = choice or {"type": "auto"}
        if choice["type"] != "none":
            choice["disable_parallel_tool_use"] = True
    if choice is not None:
        upstream["tool_choice"] = choice


def _tool_choice(choice: Any) -> dict[str, Any] | None:
    if choice is None:
        return None
    if choice in ("auto", "none"):
        return {"type": choice}
    if choice == "required":
        return {"type": "any"}
    if isinstance(choice, dict) and choice.get("type") == "function":
        function = require_dict(choice.get("function"), "tool_choice.function")
        return {
            "type": "tool",
            "name": require_str(function.get("name"), "tool_choice.function.name"),
        }
    raise unsupported(
        "tool_choice",
        f"the tool choice {choice!r}",
        UPSTREAM,
        "send auto, none, required or a function choice",
    )


def _output_format(response_format: Any, upstream: dict[str, Any]) -> None:
    """Turn response_format json_schema into Anthropic's output_config.format.

    Claude Code 2.1 itself sends output_config.format for structured output,
    so the models of an Anthropic tier accept it. The schema's name,
    description and strict flag have no Anthropic field.
    """
    if response_format is None:
        return
    response_format = require_dict(response_format, "response_format")
    kind = response_format.get("type")
    if kind == "text":
        return
    if kind != "json_schema":
        raise unsupported(
            "response_format.type",
            f"response_format {kind!r}",
            UPSTREAM,
            "send response_format json_schema with a schema",
        )
    json_schema = require_dict(
        response_format.get("json_schema"), "response_format.json_schema"
    )
    schema = require_dict(
        json_schema.get("schema"), "response_format.json_schema.schema"
    )
    upstream["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
