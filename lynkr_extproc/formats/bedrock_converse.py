"""AWS Bedrock Converse and ConverseStream responses.

Usage meaning: `inputTokens` excludes `cacheReadInputTokens` and
`cacheWriteInputTokens`. ConverseStream sends `messageStop` before the
`metadata` event that carries `usage`, so a stream is finished only when
`metadata` arrives (or the body ends), never at `messageStop`. The usage
may also arrive nested as `{"metadata": {"usage": ...}}` when a client or
proxy has decoded the frames into JSON lines.
"""

from __future__ import annotations

from typing import Any

from ..pricing import Usage
from ..sse import Event
from . import _common

name = "bedrock_converse"
error_style = "openai"


def usage_from_json(document: Any, flags: set[str]) -> Usage | None:
    if not isinstance(document, dict):
        return None
    usage = document.get("usage")
    if not isinstance(usage, dict) and isinstance(document.get("metadata"), dict):
        usage = document["metadata"].get("usage")
    if not isinstance(usage, dict):
        return None
    return _common.build_usage(
        flags,
        input_tokens=usage.get("inputTokens"),
        output_tokens=usage.get("outputTokens"),
        cache_read_tokens=usage.get("cacheReadInputTokens"),
        cache_write_tokens=usage.get("cacheWriteInputTokens"),
    )


def text_chars_from_json(document: Any) -> int:
    if not isinstance(document, dict):
        return 0
    message = (document.get("output") or {}).get("message") or {}
    total = 0
    for block in message.get("content") or []:
        if isinstance(block, dict) and isinstance(block.get("text"), str):
            total += len(block["text"])
    return total


class Meter:
    """Reads usage from ConverseStream events."""

    def __init__(self) -> None:
        self.usage: Usage | None = None
        self.text_chars = 0
        self.finished = False
        self.failed = False
        self.flags: set[str] = set()

    def feed(self, event: Event) -> None:
        payload = _common.load_json_event(event.data)
        if not isinstance(payload, dict):
            return
        kind = event.event
        if kind == "message" and len(payload) == 1:
            kind, payload = next(iter(payload.items()))
            if not isinstance(payload, dict):
                return
        if kind.startswith("exception:"):
            self.failed = True
        elif kind == "contentBlockDelta":
            delta = payload.get("delta") or {}
            text = delta.get("text")
            if isinstance(text, str):
                self.text_chars += len(text)
            tool = delta.get("toolUse") or {}
            if isinstance(tool.get("input"), str):
                self.text_chars += len(tool["input"])
        elif kind == "metadata":
            usage = usage_from_json(payload if "usage" in payload else {"metadata": payload}, self.flags)
            if usage is not None:
                self.usage = usage
            self.finished = True

    def is_usage_only(self, event: Event) -> bool:
        return False


def new_meter() -> Meter:
    return Meter()
