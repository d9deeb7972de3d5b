"""Ollama's native API: /api/chat and /api/generate.

Streams are newline-delimited JSON (`application/x-ndjson`), and Ollama
streams unless the request sets `"stream": false`. The last object has
`"done": true` with `prompt_eval_count` (input) and `eval_count` (output).
Ollama leaves `prompt_eval_count` out when the whole prompt came from its
cache; the input is then estimated and the record flagged.
"""

from __future__ import annotations

import copy
from typing import Any

from ..errors import InvalidRequestError
from ..pricing import Usage
from ..sse import Event
from . import _common
from .base import RequestFacts

error_style = "openai"


class OllamaFormat:
    """One of the two native endpoints; `name` is its format id."""

    def __init__(self, name: str, *, chat: bool) -> None:
        self.name = name
        self.error_style = error_style
        self._chat = chat

    def read_request(self, body: dict[str, Any]) -> RequestFacts:
        texts: list[str] = []
        images = 0
        last_user = ""
        first_parts: list[str] = []
        count = 1
        results = 0
        in_loop = False
        if self._chat:
            messages = body.get("messages")
            if not isinstance(messages, list) or not messages:
                raise InvalidRequestError("\"messages\" must be a non-empty list")
            count = len(messages)
            for message in messages:
                if not isinstance(message, dict):
                    raise InvalidRequestError("every entry of \"messages\" must be an object")
                content = message.get("content")
                if isinstance(content, str):
                    texts.append(content)
                images += len(message.get("images") or [])
                if message.get("role") == "user":
                    last_user = content if isinstance(content, str) else ""
                    if len(first_parts) < 1:
                        first_parts.append(last_user)
                results += message.get("role") == "tool"
            last = messages[-1]
            in_loop = isinstance(last, dict) and last.get("role") == "tool"
        else:
            prompt = body.get("prompt")
            if not isinstance(prompt, str):
                raise InvalidRequestError("\"prompt\" must be a string")
            system = body.get("system")
            if isinstance(system, str):
                texts.append(system)
            texts.append(prompt)
            last_user = prompt
            first_parts = texts[:]
            images = len(body.get("images") or [])
        options = body.get("options") or {}
        cap = options.get("num_predict") if isinstance(options, dict) else None
        tools = body.get("tools") or []
        return RequestFacts(
            model=_common.require_model(body),
            stream=body.get("stream", True) is not False,
            output_cap=cap if isinstance(cap, int) and cap > 0 else None,
            text="\n".join(texts),
            last_user_text=last_user,
            message_count=count,
            tool_names=[str((t.get("function") or {}).get("name", "")) for t in tools if isinstance(t, dict)],
            tool_result_count=results,
            in_tool_loop=in_loop,
            first_messages_digest=_common.digest(first_parts),
            image_count=images,
            client_wants_usage=True,
            tools_chars=_common.json_size(tools),
        )

    def prepare_upstream(self, body: dict[str, Any], *, model: str, include_usage: bool) -> dict[str, Any]:
        prepared = copy.copy(body)
        prepared["model"] = model
        return prepared

    def usage_from_json(self, document: Any, flags: set[str]) -> Usage | None:
        if not isinstance(document, dict) or not document.get("done"):
            return None
        if "eval_count" not in document and "prompt_eval_count" not in document:
            return None
        if "prompt_eval_count" not in document:
            flags.add("prompt_eval_count_missing")
        return _common.build_usage(
            flags,
            input_tokens=document.get("prompt_eval_count"),
            output_tokens=document.get("eval_count"),
        )

    def text_chars_from_json(self, document: Any) -> int:
        if not isinstance(document, dict):
            return 0
        message = document.get("message")
        if isinstance(message, dict):
            content = message.get("content")
            thinking = message.get("thinking")
            return (len(content) if isinstance(content, str) else 0) + (
                len(thinking) if isinstance(thinking, str) else 0
            )
        response = document.get("response")
        return len(response) if isinstance(response, str) else 0

    def new_meter(self) -> "Meter":
        return Meter(self)


class Meter:
    """Reads usage from an NDJSON stream: the last `done` object carries it."""

    def __init__(self, api: OllamaFormat) -> None:
        self._api = api
        self.usage: Usage | None = None
        self.text_chars = 0
        self.finished = False
        self.failed = False
        self.flags: set[str] = set()

    def feed(self, event: Event) -> None:
        document = _common.load_json_event(event.data)
        if not isinstance(document, dict):
            return
        if "error" in document:
            self.failed = True
        self.text_chars += self._api.text_chars_from_json(document)
        if document.get("done"):
            self.finished = True
            self.usage = self._api.usage_from_json(document, self.flags)

    def is_usage_only(self, event: Event) -> bool:
        return False


chat = OllamaFormat("ollama_chat", chat=True)
generate = OllamaFormat("ollama_generate", chat=False)
