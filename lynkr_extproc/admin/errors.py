"""Errors of admin operations, each mapped to one gRPC status code.

    LynkrError (lynkr_extproc.errors)
    └── AdminError
        ├── InvalidArgumentError   INVALID_ARGUMENT: a field is missing or invalid
        ├── NotFoundError          NOT_FOUND: no such key, budget or record
        ├── AlreadyExistsError     ALREADY_EXISTS: the key id is taken
        └── ConflictError          ABORTED: another replica changed the same key; retry

Failures of the database raise lynkr_extproc.errors.StoreError, which the
API answers with UNAVAILABLE.
"""

from __future__ import annotations

from ..errors import LynkrError


class AdminError(LynkrError):
    """An admin request that cannot be carried out as sent."""


class InvalidArgumentError(AdminError):
    pass


class NotFoundError(AdminError):
    pass


class AlreadyExistsError(AdminError):
    pass


class ConflictError(AdminError):
    pass
