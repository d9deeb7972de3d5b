"""Virtual keys through the admin API: create, list, revoke and rotate.

A secret is returned once and only its SHA-256 is stored. Revoking or
rotating a key from lynkr.yaml stores that key's hash as revoked, so its
secret is rejected although lynkr.yaml still lists it. A rotated key keeps
its id, and its new secret is stored as an admin key.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Iterable

from ..config import KeyRecord
from .base import Operations, check_ident
from .errors import AlreadyExistsError, InvalidArgumentError, NotFoundError
from .model import StoredKey

logger = logging.getLogger(__name__)

SECRET_PREFIX = "sk-lynkr-"
_KEY_ID = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


@dataclass(frozen=True)
class KeyView:
    """A virtual key as the API shows it: no secret and no hash."""

    id: str
    team: str
    org: str
    customers: frozenset[str] | None
    tiers: frozenset[str] | None
    models: frozenset[str] | None
    tier_override: bool
    source: str
    """"admin" or "config"."""
    active: bool
    created_at: datetime | None
    revoked_at: datetime | None


class KeyOperations(Operations):
    async def create(
        self,
        *,
        key_id: str,
        team: str,
        org: str,
        customers: Iterable[str] = (),
        tiers: Iterable[str] = (),
        models: Iterable[str] = (),
        tier_override: bool = False,
    ) -> tuple[KeyView, str]:
        """Create an admin key and return it with its secret, which is not stored."""
        await self.state.refresh()
        key_id = key_id or f"vk-{secrets.token_hex(8)}"
        if not _KEY_ID.match(key_id):
            raise InvalidArgumentError(
                f"key id {key_id!r} is invalid; use 1 to 128 letters, digits, "
                "'_', '.' or '-'"
            )
        if self._id_used(key_id):
            raise AlreadyExistsError(
                f"key id {key_id!r} is already used by a key in lynkr.yaml or the "
                "admin API; choose another id, or rotate that key instead"
            )
        secret, digest = _new_secret()
        stored = StoredKey(
            key_id=key_id,
            sha256=digest,
            team=check_ident(team, "team"),
            org=check_ident(org, "org"),
            customers=_names(customers, "customers"),
            tiers=self._tiers(tiers),
            models=_names(models, "models"),
            tier_override=tier_override,
            source="admin",
            created_at=self.gateway.clock(),
        )
        await self.state.store.change_keys(
            revoke_id=None, revoked_at=stored.created_at, add=[stored]
        )
        await self.state.refresh()
        logger.info(
            "admin: created virtual key %s for team %s, org %s",
            key_id,
            stored.team,
            stored.org,
        )
        return _stored_view(stored), secret

    async def list_keys(
        self, *, include_revoked: bool, team: str = "", org: str = ""
    ) -> list[KeyView]:
        """Return admin and lynkr.yaml keys, ordered by org, team, id and creation."""
        await self.state.refresh()
        views = [_stored_view(key) for key in self.state.snapshot.keys]
        stored = {key.sha256 for key in self.state.snapshot.keys}
        views += [
            _config_view(record)
            for digest, record in self.config.keys.items()
            if digest not in stored
        ]
        views = [
            view
            for view in views
            if (include_revoked or view.active)
            and (not team or view.team == team)
            and (not org or view.org == org)
        ]
        return sorted(
            views,
            key=lambda v: (v.org, v.team, v.id, not v.active, v.created_at is None),
        )

    async def revoke(self, key_id: str) -> KeyView:
        """Revoke the active key with this id, admin or lynkr.yaml."""
        await self.state.refresh()
        now = self.gateway.clock()
        admin_key, config_key = self._active(key_id)
        if admin_key is not None:
            revoked = replace(admin_key, revoked_at=now)
            await self.state.store.change_keys(revoke_id=key_id, revoked_at=now, add=[])
        else:
            assert config_key is not None
            revoked = _revoked_config_key(config_key, now)
            await self.state.store.change_keys(
                revoke_id=None, revoked_at=now, add=[revoked]
            )
        await self.state.refresh()
        logger.info("admin: revoked virtual key %s", key_id)
        return _stored_view(revoked)

    async def rotate(self, key_id: str) -> tuple[KeyView, str]:
        """Give the active key with this id a new secret and revoke the old secret."""
        await self.state.refresh()
        now = self.gateway.clock()
        admin_key, config_key = self._active(key_id)
        secret, digest = _new_secret()
        if admin_key is not None:
            new = replace(admin_key, sha256=digest, created_at=now)
            await self.state.store.change_keys(
                revoke_id=key_id, revoked_at=now, add=[new]
            )
        else:
            assert config_key is not None
            old = _revoked_config_key(config_key, now)
            new = replace(old, sha256=digest, source="admin", revoked_at=None)
            await self.state.store.change_keys(
                revoke_id=None, revoked_at=now, add=[old, new]
            )
        await self.state.refresh()
        logger.info("admin: rotated virtual key %s; the old secret is revoked", key_id)
        return _stored_view(new), secret

    def _active(self, key_id: str) -> tuple[StoredKey | None, KeyRecord | None]:
        """Return the active admin key, or else the active lynkr.yaml key, with this id."""
        for key in self.state.snapshot.keys:
            if key.key_id == key_id and key.active:
                return key, None
        stored = {key.sha256 for key in self.state.snapshot.keys}
        for digest, record in self.config.keys.items():
            if record.id == key_id and digest not in stored:
                return None, record
        if self._id_used(key_id):
            raise NotFoundError(f"key {key_id!r} is already revoked")
        raise NotFoundError(
            f"no virtual key with id {key_id!r}; list them with "
            "`lynkr-extproc keys list`"
        )

    def _id_used(self, key_id: str) -> bool:
        stored = any(key.key_id == key_id for key in self.state.snapshot.keys)
        return stored or any(
            record.id == key_id for record in self.config.keys.values()
        )

    def _tiers(self, tiers: Iterable[str]) -> frozenset[str] | None:
        names = frozenset(tiers)
        unknown = sorted(names - self.config.tiers.keys())
        if unknown:
            raise InvalidArgumentError(
                f"tier {unknown[0]!r} is not a tier; tiers: "
                f"{', '.join(self.config.tiers)}"
            )
        return names or None


def _new_secret() -> tuple[str, str]:
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    return secret, hashlib.sha256(secret.encode()).hexdigest()


def _names(values: Iterable[str], what: str) -> frozenset[str] | None:
    names = frozenset(check_ident(value, what) for value in values)
    return names or None


def _revoked_config_key(record: KeyRecord, at: datetime) -> StoredKey:
    return StoredKey(
        key_id=record.id,
        sha256=record.sha256,
        team=record.team,
        org=record.org,
        customers=record.customers,
        tiers=record.tiers,
        models=record.models,
        tier_override=record.tier_override,
        source="config",
        created_at=at,
        revoked_at=at,
    )


def _stored_view(key: StoredKey) -> KeyView:
    return KeyView(
        id=key.key_id,
        team=key.team,
        org=key.org,
        customers=key.customers,
        tiers=key.tiers,
        models=key.models,
        tier_override=key.tier_override,
        source=key.source,
        active=key.active,
        # A lynkr.yaml key's row is written when it is revoked, not when it was made.
        created_at=key.created_at if key.source == "admin" else None,
        revoked_at=key.revoked_at,
    )


def _config_view(record: KeyRecord) -> KeyView:
    return KeyView(
        id=record.id,
        team=record.team,
        org=record.org,
        customers=record.customers,
        tiers=record.tiers,
        models=record.models,
        tier_override=record.tier_override,
        source="config",
        active=True,
        created_at=None,
        revoked_at=None,
    )
