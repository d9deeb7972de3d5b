"""The interface of a translation between a client API and an upstream API."""

from __future__ import annotations

from typing import Protocol

from ..sse import Event


class StreamTranslator(Protocol):
    """Rewrites one upstream event stream as the client API's event stream.

    Every call returns whole events only, so the bytes returned so far are
    a valid prefix of a client stream at every moment.
    """

    def feed(self, event: Event) -> bytes:
        """Translate one upstream event into zero or more client events."""
        ...

    def finish(self, *, error: str | None = None) -> bytes:
        """End the client stream after the upstream stream ended or was cut.

        With `error` set, or when the upstream stream ended before its
        final event, the result is the client API's error event. Calls
        after the client stream has ended return b"".
        """
        ...


class Translation(Protocol):
    """Request, response, error and stream translation for one request.

    Create one per request: `request` records what the later methods
    need, such as whether a Chat Completions client asked for streamed
    usage.
    """

    client_api: str
    upstream_api: str
    upstream_path: str
    """The upstream API's own path, before any provider base path."""

    def request(self, body: dict, *, model: str) -> dict:
        """Translate a client request body, with `model` set.

        Raises InvalidRequestError naming the field that cannot be sent to
        the upstream.
        """
        ...

    def response(self, document: dict) -> dict:
        """Translate an upstream JSON response body."""
        ...

    def error(self, status: int, document: object) -> dict:
        """Translate an upstream error body of any shape, text included."""
        ...

    def stream(self) -> StreamTranslator: ...
