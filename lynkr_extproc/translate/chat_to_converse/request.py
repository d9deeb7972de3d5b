"""OpenAI Chat Completions request -> AWS Bedrock Converse request.

The upstream body is built field by field, so a client field that this
module does not read never reaches the upstream. The body carries no
model and no stream field: the provider puts the model id in the path
and picks /converse or /converse-stream.

These rules of Converse shape this module. Messages alternate between
user and assistant. Text blocks must not be empty ("text content blocks
must be non-empty"). Images and documents go as base64 bytes or S3
locations, never as URLs. Tool use ids match [a-zA-Z0-9_-]{1,64}, and
temperature and topP lie in [0, 1] (Bedrock API reference:
ToolResultBlock, InferenceConfiguration). A request whose messages hold
toolUse or toolResult blocks is rejected without toolConfig ("The
toolConfig field must be defined when using toolUse and toolResult
content blocks").
"""

from __future__ import annotations

import logging
import re
from typing import Any

from .._chat_messages import Blocks, Conversation, read_conversation, reject_unsupported
from .._common import (
    FieldRule,
    derive_id,
    dump_json,
    parse_data_url,
    require_dict,
    require_list,
    require_number,
    require_positive_int,
    require_str,
    unsupported,
)

logger = logging.getLogger(__name__)

UPSTREAM = "Bedrock Converse"

MAX_TEMPERATURE = 1.0
"""Converse's upper temperature bound, where OpenAI's is 2."""

EMPTY_TOOL_RESULT = "(no output)"
"""Text sent for a tool message with no text, because Converse rejects empty text."""

MAX_TOOL_ID_CHARS = 64

IMAGE_FORMATS = {
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/jpg": "jpeg",
    "image/gif": "gif",
    "image/webp": "webp",
}
"""Media types of the image formats that Converse accepts."""

DOCUMENT_FORMATS = {
    "application/pdf": "pdf",
    "text/csv": "csv",
    "application/msword": "doc",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "application/vnd.ms-excel": "xls",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
    "text/html": "html",
    "text/plain": "txt",
    "text/markdown": "md",
}
"""Media types of the document formats that Converse accepts."""

FIELD_RULES: tuple[FieldRule, ...] = (
    FieldRule("n", "rejected", "Converse returns one choice per request."),
    FieldRule(
        "functions, function_call, messages[] with role function",
        "rejected",
        "The deprecated function-calling form. Clients send tools and "
        "tool_calls instead.",
    ),
    FieldRule(
        "audio, modalities containing audio, messages[].content[] of type input_audio",
        "rejected",
        "Converse takes and returns no audio.",
    ),
    FieldRule(
        "web_search_options",
        "rejected",
        "OpenAI runs this search, and Converse has no tool that replaces it.",
    ),
    FieldRule(
        "tools[] of a type other than function, tool_choice allowed_tools",
        "rejected",
        "Custom (free-form) tools and tool allow-lists have no Converse counterpart.",
    ),
    FieldRule(
        "response_format json_object",
        "rejected",
        "Converse constrains output to a JSON schema only "
        "(outputConfig.textFormat), so clients send response_format json_schema.",
    ),
    FieldRule(
        "messages[].content[] image_url with an http or https URL",
        "rejected",
        "Converse takes image bytes or an S3 location and fetches no URL, so "
        "clients send the image as a base64 data URL.",
    ),
    FieldRule(
        "messages[].content[] image_url or file of a media type Converse lacks",
        "rejected",
        "Converse reads png, jpeg, gif and webp images, and pdf, csv, doc, docx, "
        "xls, xlsx, html, txt and md documents.",
    ),
    FieldRule(
        "messages[].content[] file with a file_id",
        "rejected",
        "A file_id refers to OpenAI's file storage, which the upstream cannot read.",
    ),
    FieldRule(
        "messages[].content[].image_url.detail",
        "dropped",
        "Converse has no image resolution setting.",
    ),
    FieldRule(
        "top_p when temperature is also set",
        "dropped",
        "Claude Opus 4.1, Sonnet 4.5 and later reject a request that sets "
        "both, and Converse passes both to the model.",
    ),
    FieldRule(
        "temperature above 1",
        "changed",
        "Lowered to 1, the maximum of Converse's inferenceConfig, where OpenAI "
        "allows up to 2.",
    ),
    FieldRule(
        "tool_choice none",
        "changed",
        "Converse has no none choice, so toolConfig is left out. When the "
        "messages hold tool calls or results, Converse requires toolConfig, so "
        "the tools are sent with the default (auto) choice and the model may "
        "still call one.",
    ),
    FieldRule(
        "tools empty while messages hold tool calls or tool results",
        "changed",
        "Converse requires toolConfig then, so each tool named in the messages "
        "is declared with an input schema that accepts any object.",
    ),
    FieldRule(
        "messages[] with role tool and no text",
        "changed",
        f"Sent as the text {EMPTY_TOOL_RESULT!r}, because Converse rejects an "
        "empty text block.",
    ),
    FieldRule(
        "parallel_tool_calls",
        "dropped",
        "Converse has no setting for parallel tool use.",
    ),
    FieldRule(
        "reasoning_effort",
        "dropped",
        "Reasoning in Converse is set per model family in "
        "additionalModelRequestFields, and no value follows from low, medium "
        "or high for every model.",
    ),
    FieldRule(
        "stream_options",
        "dropped",
        "ConverseStream always ends with a metadata event that carries usage, "
        "so include_usage decides only whether the client stream gets a usage chunk.",
    ),
    FieldRule(
        "frequency_penalty, presence_penalty, logit_bias, seed",
        "dropped",
        "Converse's inferenceConfig has no sampling controls of these kinds.",
    ),
    FieldRule(
        "logprobs, top_logprobs",
        "dropped",
        "Converse returns no log probabilities, so the response has none.",
    ),
    FieldRule(
        "user, safety_identifier, store, metadata, service_tier, "
        "prompt_cache_key, prediction, verbosity",
        "dropped",
        "OpenAI platform features (end-user ids, stored completions, tiers, "
        "cache routing, predicted outputs) that do not change the answer.",
    ),
    FieldRule(
        "tools[].function.strict",
        "dropped",
        "Converse's toolSpec.strict is accepted by some models only, and a "
        "model without it rejects the request.",
    ),
    FieldRule(
        "system and developer messages after the first non-system message",
        "changed",
        "Converse takes the system prompt apart from the messages, so every "
        "system and developer message joins it in order and loses its place "
        "in the conversation.",
    ),
    FieldRule(
        "system and developer messages of a request with no other message",
        "changed",
        "Sent as the user message: Converse requires one, and OpenAI responds "
        "to such a request as if the instructions were the prompt.",
    ),
    FieldRule(
        "messages[].name",
        "dropped",
        "Converse messages carry no participant name.",
    ),
)

_TOOL_ID_INVALID = re.compile(r"[^a-zA-Z0-9_-]")
_ANY_OBJECT_SCHEMA = {"type": "object"}
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
    "response_format",
    "n",
    "functions",
    "function_call",
    "audio",
    "modalities",
    "web_search_options",
}
"""Top-level fields read here. Any other field is left out and logged at debug."""


class _Conversation(Conversation):
    """Converse messages being built, merging consecutive same-role turns."""

    def tool_names(self) -> list[str]:
        """Return the names of the tools that the messages call, in order."""
        names: dict[str, None] = {}
        for message in self.messages:
            for block in message["content"]:
                if "toolUse" in block:
                    names[block["toolUse"]["name"]] = None
        return list(names)

    def has_tool_blocks(self) -> bool:
        return any(
            "toolUse" in block or "toolResult" in block
            for message in self.messages
            for block in message["content"]
        )


def converse_tool_id(call_id: str) -> str:
    """Return `call_id` as a Converse tool use id.

    Converse accepts ids of 1 to 64 letters, digits, "_" and "-". Other
    characters become "_", and a longer id becomes a hash of itself. The
    same mapping applies to tool_calls and tool messages, so pairs still
    match.
    """
    tool_id = _TOOL_ID_INVALID.sub("_", call_id) or "_"
    if len(tool_id) > MAX_TOOL_ID_CHARS:
        return derive_id("tooluse_", call_id)
    return tool_id


def translate_request(body: dict[str, Any]) -> dict[str, Any]:
    """Translate a Chat Completions request into a Converse request body."""
    reject_unsupported(body, UPSTREAM)
    conversation = read_conversation(body, _BLOCKS, _Conversation(system=[], messages=[]))
    upstream: dict[str, Any] = {"messages": conversation.messages}
    if conversation.system:
        upstream["system"] = conversation.system
    inference = _inference_config(body)
    if inference:
        upstream["inferenceConfig"] = inference
    tool_config = _tool_config(body, conversation)
    if tool_config is not None:
        upstream["toolConfig"] = tool_config
    output_config = _output_config(body.get("response_format"))
    if output_config is not None:
        upstream["outputConfig"] = output_config
    for field in sorted(set(body) - _HANDLED_FIELDS):
        logger.debug("translate: dropped field %s for a Converse upstream", field)
    return upstream


def _inference_config(body: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for field in ("max_completion_tokens", "max_tokens"):
        if body.get(field) is not None:
            config["maxTokens"] = require_positive_int(body[field], field)
            break
    temperature = body.get("temperature")
    if temperature is not None:
        temperature = require_number(temperature, "temperature")
        config["temperature"] = min(temperature, MAX_TEMPERATURE)
    elif body.get("top_p") is not None:
        config["topP"] = require_number(body["top_p"], "top_p")
    stop = body.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    if stop:
        sequences = require_list(stop, "stop")
        for index, sequence in enumerate(sequences):
            require_str(sequence, f"stop[{index}]")
        # Converse rejects empty stop sequences, so they are left out.
        kept = [sequence for sequence in sequences if sequence]
        if kept:
            config["stopSequences"] = kept
    return config


# -- messages ---------------------------------------------------------------


def _image_block(part: dict[str, Any], path: str) -> dict[str, Any]:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    url_path = f"{path}.image_url.url"
    url = require_str(url, url_path)
    parsed = parse_data_url(url)
    if parsed is None:
        description = "an image URL"
        if url.startswith("data:"):
            description = "a data URL that is not base64"
        raise unsupported(
            url_path,
            description,
            UPSTREAM,
            "send the image as a base64 data URL, since Converse fetches no URL",
        )
    media_type, data = parsed
    image_format = IMAGE_FORMATS.get(media_type.lower())
    if image_format is None:
        raise unsupported(
            url_path,
            f"an image of type {media_type!r}",
            UPSTREAM,
            "send a png, jpeg, gif or webp image",
        )
    return {"image": {"format": image_format, "source": {"bytes": data}}}


def _document_block(part: dict[str, Any], path: str, position: int) -> dict[str, Any]:
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
    document_format = DOCUMENT_FORMATS.get(media_type.lower())
    if document_format is None:
        raise unsupported(
            f"{path}.file.file_data",
            f"a file of type {media_type!r}",
            UPSTREAM,
            "send a pdf, csv, doc, docx, xls, xlsx, html, txt or md file",
        )
    return {
        "document": {
            "format": document_format,
            "name": _document_name(file.get("filename"), position),
            "source": {"bytes": data},
        }
    }


def _document_name(filename: Any, position: int) -> str:
    """Return a document name that Converse accepts.

    Converse allows letters, digits, single spaces, hyphens, parentheses
    and square brackets in names, so other characters become spaces.
    """
    name = filename if isinstance(filename, str) else ""
    name = re.sub(r"[^A-Za-z0-9\-()\[\] ]", " ", name)
    name = re.sub(r" +", " ", name).strip()
    return name or f"document {position + 1}"


class _ConverseBlocks(Blocks):
    upstream = UPSTREAM
    short_name = "Converse"

    def text(self, text: str) -> dict[str, Any]:
        return {"text": text}

    def image(self, part: dict[str, Any], path: str) -> dict[str, Any]:
        return _image_block(part, path)

    def document(self, part: dict[str, Any], path: str, position: int) -> dict[str, Any]:
        return _document_block(part, path, position)

    def tool_use(self, call_id: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        return {"toolUse": {"toolUseId": converse_tool_id(call_id), "name": name, "input": arguments}}

    def tool_result(self, call_id: str, content: list[dict[str, Any]]) -> dict[str, Any]:
        """Build a toolResult block from a tool message's text.

        The block has no status: chat tool messages carry no error flag, and
        the Converse reference documents the field for Amazon Nova and
        Anthropic Claude models only.
        """
        return {
            "toolResult": {
                "toolUseId": converse_tool_id(call_id),
                "content": content or [{"text": EMPTY_TOOL_RESULT}],
            }
        }


_BLOCKS = _ConverseBlocks()


# -- tools and output format ------------------------------------------------


def _tool_config(
    body: dict[str, Any], conversation: _Conversation
) -> dict[str, Any] | None:
    """Build toolConfig, or return None when the request needs none."""
    tools = _tool_specs(body.get("tools"))
    choice = _tool_choice(body.get("tool_choice"))
    needed = conversation.has_tool_blocks()
    if not tools and needed:
        tools = [
            {"toolSpec": {"name": name, "inputSchema": {"json": _ANY_OBJECT_SCHEMA}}}
            for name in conversation.tool_names()
        ]
    if not tools or (choice == "none" and not needed):
        return None
    config: dict[str, Any] = {"tools": tools}
    if isinstance(choice, dict):
        config["toolChoice"] = choice
    return config


def _tool_specs(tools: Any) -> list[dict[str, Any]]:
    if not tools:
        return []
    specs = []
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
        spec: dict[str, Any] = {
            "name": require_str(function.get("name"), f"{path}.function.name"),
        }
        description = function.get("description")
        if isinstance(description, str) and description:
            spec["description"] = description
        parameters = function.get("parameters")
        if parameters is None:
            parameters = {"type": "object", "properties": {}}
        schema = require_dict(parameters, f"{path}.function.parameters")
        spec["inputSchema"] = {"json": schema}
        specs.append({"toolSpec": spec})
    return specs


def _tool_choice(choice: Any) -> dict[str, Any] | str | None:
    """Return the Converse toolChoice, "none", or None for the default (auto)."""
    if choice is None:
        return None
    if choice == "auto":
        return {"auto": {}}
    if choice == "none":
        return "none"
    if choice == "required":
        return {"any": {}}
    if isinstance(choice, dict) and choice.get("type") == "function":
        function = require_dict(choice.get("function"), "tool_choice.function")
        name = require_str(function.get("name"), "tool_choice.function.name")
        return {"tool": {"name": name}}
    raise unsupported(
        "tool_choice",
        f"the tool choice {choice!r}",
        UPSTREAM,
        "send auto, none, required or a function choice",
    )


def _output_config(response_format: Any) -> dict[str, Any] | None:
    """Turn response_format json_schema into Converse's outputConfig.textFormat.

    Converse takes the schema as a JSON string. The strict flag has no
    Converse field.
    """
    if response_format is None:
        return None
    response_format = require_dict(response_format, "response_format")
    kind = response_format.get("type")
    if kind == "text":
        return None
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
    definition: dict[str, Any] = {"schema": dump_json(schema)}
    for field in ("name", "description"):
        if isinstance(json_schema.get(field), str) and json_schema[field]:
            definition[field] = json_schema[field]
    return {
        "textFormat": {"type": "json_schema", "structure": {"jsonSchema": definition}}
    }
