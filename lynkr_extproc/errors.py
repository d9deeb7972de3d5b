"""Exceptions raised by lynkr-extproc.

    LynkrError
    ├── ConfigError            invalid configuration; never reaches a client
    ├── StoreError             the budget store failed or timed out
    ├── ProtocolError          an ext_proc message out of order; closes the stream
    └── ClientError            a request is refused; carries the HTTP status
        ├── AuthenticationError    401: missing or unknown virtual key
        ├── PermissionDeniedError  403: tenant headers or tier not allowed
        ├── InvalidRequestError    400: body is not a valid request
        ├── ModelNotPricedError    400: no price for the upstream model
        ├── RequestTooLargeError   413: body above the configured maximum
        ├── BudgetExceededError    429: a budget window is exhausted
        ├── BudgetUnavailableError 503: the budget store cannot be reached
        └── UpstreamUnavailableError 503: the upstream's credential is unset

`lynkr_extproc.responses.error_response` turns a ClientError into the
status, headers and JSON body that clients of each API understand.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


class LynkrError(Exception):
    """Base class of every error raised by this package."""


class ConfigError(LynkrError):
    """Invalid configuration: the message names the path and the fix."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"config {path}: {message}")
        self.path = path


class StoreError(LynkrError):
    """The budget store failed; the caller applies the failure policy."""


class ProtocolError(LynkrError):
    """Envoy sent a message that the stream's state does not expect."""


class ClientError(LynkrError):
    """A request refused with an HTTP status and an error type."""

    status = 400
    error_type = "invalid_request_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def extra_fields(self) -> dict[str, object]:
        """Return fields added to the JSON error object beside the message."""
        return {}

    def extra_headers(self) -> dict[str, str]:
        return {}


class AuthenticationError(ClientError):
    status = 401
    error_type = "authentication_error"


class PermissionDeniedError(ClientError):
    status = 403
    error_type = "permission_error"


class InvalidRequestError(ClientError):
    status = 400
    error_type = "invalid_request_error"


class ModelNotPricedError(ClientError):
    status = 400
    error_type = "model_not_priced"


class RequestTooLargeError(ClientError):
    status = 413
    error_type = "request_too_large"


class BudgetUnavailableError(ClientError):
    status = 503
    error_type = "budget_unavailable"


class UpstreamUnavailableError(ClientError):
    status = 503
    error_type = "upstream_unavailable"


@dataclass(frozen=True)
class Exhausted:
    """The budget window that rejected a request, as shown to the client."""

    level: str
    id: str
    window: str
    limit_usd: str
    spent_usd: str
    resets_at: datetime | None


class BudgetExceededError(ClientError):
    status = 429
    error_type = "budget_exceeded"

    def __init__(self, exhausted: Exhausted, *, now: datetime) -> None:
        resets = exhausted.resets_at
        when = f", resets {_iso(resets)}" if resets else ", does not reset"
        super().__init__(
            f"Budget exceeded for {exhausted.level}={exhausted.id}: "
            f"{exhausted.window} limit ${exhausted.limit_usd}, "
            f"spent ${exhausted.spent_usd}{when}"
        )
        self.exhausted = exhausted
        self.now = now

    def extra_fields(self) -> dict[str, object]:
        exhausted = self.exhausted
        resets = exhausted.resets_at
        return {
            "level": exhausted.level,
            "id": exhausted.id,
            "window": exhausted.window,
            "limit_usd": exhausted.limit_usd,
            "spent_usd": exhausted.spent_usd,
            "resets_at": _iso(resets) if resets else None,
        }

    def extra_headers(self) -> dict[str, str]:
        resets = self.exhausted.resets_at
        if resets is None:
            return {}
        seconds = max(1, int((resets - self.now).total_seconds() + 0.999))
        return {"retry-after": str(seconds)}


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
