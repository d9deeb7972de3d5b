"""OpenAI Chat Completions response -> OpenAI Responses `response` object.

Text becomes one `message` output item, each tool call a `function_call`
item, or a `custom_tool_call` item when it calls a custom tool of the
request. Reasoning text that some chat servers return is dropped: a
Responses reasoning item from a chat upstream could not be read back by
OpenAI if the client sent it to an OpenAI tier later.
"""

from __future__ import annotations

from typing import Any

from .._common import derive_id, load_json, token_count
from .._errors import error_message, error_type, openai_error, openai_error_type
from .request import CUSTOM_INPUT, RequestContext

_ECHO_DEFAULTS: dict[str, Any] = {
    "instructions": None,
    "max_output_tokens": None,
    "parallel_tool_calls": True,
    "previous_response_id": None,
    "reasoning": {"effort": None, "summary": None},
    "store": False,
    "temperature": None,
    "text": {"format": {"type": "text"}},
    "tool_choice": "auto",
    "tools": [],
    "top_p": None,
    "truncation": "disabled",
    "user": None,
    "metadata": {},
}
"""Fields a `response` object repeats from the request, with the API defaults.

`store` is false whatever the request sets, because the response is not
stored.
"""

_INCOMPLETE_REASONS = {
    "length": "max_output_tokens",
    "content_filter": "content_filter",
}


def response_id(upstream_id: Any) -> str:
    """Return the Responses id for a chat completion id."""
    return derive_id("resp_", upstream_id)


def item_id(prefix: str, upstream_id: Any, index: int) -> str:
    """Return the id of output item `index`, with prefix "msg_", "fc_" or "ctc_"."""
    return derive_id(prefix, upstream_id, index)


def usage(raw: Any) -> dict[str, Any]:
    """Map chat usage to Responses usage, which also counts cached tokens as input."""
    raw = raw if isinstance(raw, dict) else {}
    prompt_details = raw.get("prompt_tokens_details")
    prompt_details = prompt_details if isinstance(prompt_details, dict) else {}
    completion_details = raw.get("completion_tokens_details")
    completion_details = (
        completion_details if isinstance(completion_details, dict) else {}
    )
    prompt = token_count(raw.get("prompt_tokens"))
    completion = token_count(raw.get("completion_tokens"))
    cached = min(token_count(prompt_details.get("cached_tokens")), prompt)
    reasoning = min(token_count(completion_details.get("reasoning_tokens")), completion)
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": prompt + completion,
    }


def status(finish_reason: Any) -> tuple[str, dict[str, str] | None]:
    """Return the response status and incomplete_details for a finish_reason."""
    reason = _INCOMPLETE_REASONS.get(finish_reason)
    if reason is None:
        return "completed", None
    return "incomplete", {"reason": reason}


def response_object(
    *,
    response_id: str,
    created_at: Any,
    model: str,
    state: str,
    output: list[dict[str, Any]],
    usage: dict[str, Any] | None,
    context: RequestContext,
    incomplete_details: dict[str, str] | None = None,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build a Responses `response` object whose status is `state`."""
    body: dict[str, Any] = {
        "id": response_id,
        "object": "response",
        "created_at": created_at if isinstance(created_at, int) else 0,
        "status": state,
        "error": error,
        "incomplete_details": incomplete_details,
        "model": model,
        "output": output,
    }
    for name, default in _ECHO_DEFAULTS.items():
        body[name] = context.echo.get(name, default)
    body["store"] = False
    body["usage"] = usage
    return body


def message_item(identifier: str, text: str, *, state: str) -> dict[str, Any]:
    """Build a message output item holding one output_text part."""
    return {
        "type": "message",
        "id": identifier,
        "status": state,
        "role": "assistant",
        "content": [text_part(text)],
    }


def text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def call_item(
    identifier: str,
    *,
    call_id: str,
    name: str,
    arguments: str,
    custom: bool,
    state: str,
) -> dict[str, Any]:
    """Build a function_call item, or a custom_tool_call item when `custom`."""
    if custom:
        return {
            "type": "custom_tool_call",
            "id": identifier,
            "status": state,
            "call_id": call_id,
            "name": name,
            "input": custom_input(arguments),
        }
    return {
        "type": "function_call",
        "id": identifier,
        "status": state,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
    }


def custom_input(arguments: str) -> str:
    """Return the free-form input of a custom tool from its function's arguments.

    Arguments that are not an object with a string CUSTOM_INPUT are passed
    on as they are, so the tool reports the problem.
    """
    parsed = load_json(arguments)
    if isinstance(parsed, dict) and isinstance(parsed.get(CUSTOM_INPUT), str):
        return parsed[CUSTOM_INPUT]
    return arguments


def translate_response(
    document: dict[str, Any], context: RequestContext
) -> dict[str, Any]:
    """Translate a chat.completion body into a Responses `response` object."""
    upstream_id = document.get("id", "")
    choices = document.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices else {}
    choice = choice if isinstance(choice, dict) else {}
    message = choice.get("message")
    message = message if isinstance(message, dict) else {}
    output = []
    text = _text(message)
    if text:
        output.append(
            message_item(item_id("msg_", upstream_id, 0), text, state="completed")
        )
    calls = message.get("tool_calls")
    for index, call in enumerate(calls if isinstance(calls, list) else []):
        if isinstance(call, dict):
            output.append(_call(call, upstream_id, index, context))
    state, incomplete = status(choice.get("finish_reason"))
    return response_object(
        response_id=response_id(upstream_id),
        created_at=document.get("created"),
        model=str(document.get("model") or ""),
        state=state,
        output=output,
        usage=usage(document.get("usage")),
        context=context,
        incomplete_details=incomplete,
    )


def _text(message: dict[str, Any]) -> str:
    texts = []
    content = message.get("content")
    if isinstance(content, str):
        texts.append(content)
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                texts.append(part["text"])
    if isinstance(message.get("refusal"), str):
        texts.append(message["refusal"])
    return "".join(texts)


def _call(
    call: dict[str, Any], upstream_id: Any, index: int, context: RequestContext
) -> dict[str, Any]:
    function = call.get("function")
    function = function if isinstance(function, dict) else {}
    name = str(function.get("name") or "")
    call_id = call.get("id")
    if not isinstance(call_id, str) or not call_id:
        call_id = item_id("call_", upstream_id, index)
    arguments = function.get("arguments")
    custom = name in context.custom_tools
    return call_item(
        item_id("ctc_" if custom else "fc_", upstream_id, index + 1),
        call_id=call_id,
        name=name,
        arguments=arguments if isinstance(arguments, str) else "",
        custom=custom,
        state="completed",
    )


def translate_error(status_code: int, document: object) -> dict[str, Any]:
    """Translate an upstream error body into an OpenAI error body."""
    kind = error_type(document) or openai_error_type(status_code)
    return openai_error(kind, error_message(status_code, document))
