"""Business rules of one request: tenant, tier, admission and spend.

The stream processor calls these methods at the right phases, and nothing
here depends on the ext_proc protocol.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Mapping, Protocol

from . import dispatch
from .config import LEVELS, Config, KeyRecord, Tier, Upstream, Window, missing_credential
from .errors import (
    AuthenticationError,
    BudgetExceededError,
    BudgetUnavailableError,
    Exhausted,
    InvalidRequestError,
    ModelNotPricedError,
    PermissionDeniedError,
    StoreError,
    UpstreamUnavailableError,
)
from .formats.base import RequestFacts
from .metrics import Metrics
from .money import display_usd
from .periods import period_range
from .pricing import Price, Usage
from .routing.score import estimate_tokens, score_request
from .store import BudgetStore, Charge, Rejection, Reservation, SpendRecord

logger = logging.getLogger(__name__)

IMAGE_TOKEN_ESTIMATE = 1600
"""Input tokens assumed per image: about the most one image costs."""

SESSION_HEADERS = ("x-claude-code-session-id", "session-id", "session_id")
SESSION_CACHE_S = 5.0
"""How long a session's tier, once read from or written to the store, is
reused without asking the store again. A tier another replica pinned
shows here within this time."""
SESSION_CACHE_SIZE = 65_536
FAIL_OPEN_LOG_INTERVAL_S = 60.0


@dataclass(frozen=True)
class Tenant:
    key: KeyRecord
    customer: str | None


@dataclass(frozen=True)
class Route:
    tier: str
    upstream: Upstream
    model: str
    price: Price
    unpriced: bool
    reason: str
    max_output_estimate: int


@dataclass(frozen=True)
class Admission:
    route: Route
    reservation: Reservation
    input_estimate: int


class AdminHook(Protocol):
    """Keys and budgets changed at run time; lynkr_extproc.admin.state.AdminState."""

    def key_for_digest(self, digest: str) -> KeyRecord | None:
        """Return the key, None to look in config.keys, or raise AuthenticationError if revoked."""

    def windows_for(self, level: str, ident: str) -> tuple[Window, ...] | None:
        """Return the windows of one budget id, or None to use config.budgets."""


class Gateway:
    def __init__(
        self,
        config: Config,
        store: BudgetStore,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
        metrics: Metrics | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.metrics = metrics or Metrics()
        self.apply(config)
        self.admin: AdminHook | None = None
        """Set by the admin API at start when lynkr.yaml has an `admin:` section."""
        self.fail_open_admissions = 0
        """Requests admitted without a hold because the store failed."""
        self._fail_open_logged_at = -FAIL_OPEN_LOG_INTERVAL_S
        self._periods: dict[tuple[str, Any], tuple[str, datetime | None, datetime | None]] = {}
        self._sessions: dict[str, tuple[str, float]] = {}
        """Session -> (tier, monotonic time the entry expires), oldest first."""

    def apply(self, config: Config) -> None:
        """Use `config` for the next requests (a reload)."""
        self.config = config
        self._tier_rank = {name: rank for rank, name in enumerate(config.tiers)}

    # -- tenants -----------------------------------------------------------

    def authenticate(self, headers: Mapping[str, str]) -> Tenant:
        """Find the key of a request and check its tenant headers."""
        secret = _presented_key(headers)
        if secret is None:
            if self.config.anonymous is None:
                raise AuthenticationError(
                    "missing virtual key: send it in x-api-key, "
                    "authorization: Bearer, or lynkr-virtual-key"
                )
            key = self.config.anonymous
        else:
            digest = hashlib.sha256(secret.encode()).hexdigest()
            found = self.admin.key_for_digest(digest) if self.admin is not None else None
            if found is None:
                found = self.config.keys.get(digest)
            if found is None:
                raise AuthenticationError("invalid virtual key")
            key = found
        for header, expected in (("lynkr-team-id", key.team), ("lynkr-org-id", key.org)):
            claimed = headers.get(header)
            if claimed is not None and claimed != expected:
                raise PermissionDeniedError(
                    f"{header} {claimed!r} does not match the virtual key's "
                    f"{header.split('-')[1]}"
                )
        return Tenant(key, self._customer(key, headers.get("lynkr-customer-id")))

    def _customer(self, key: KeyRecord, customer: str | None) -> str | None:
        if customer is None:
            return None
        allowed = key.customers
        if allowed is None or ("*" not in allowed and customer not in allowed):
            raise PermissionDeniedError(
                f"virtual key {key.id!r} may not attribute spend to customer {customer!r}"
            )
        return customer

    # -- routing -----------------------------------------------------------

    async def route(
        self,
        tenant: Tenant,
        api: str,
        facts: RequestFacts,
        headers: Mapping[str, str],
    ) -> Route:
        """Choose the tier, upstream and upstream model of a request."""
        key = tenant.key
        if key.models is not None and "*" not in key.models and facts.model not in key.models:
            raise PermissionDeniedError(
                f"virtual key {key.id!r} may not use model {facts.model!r}"
            )
        alias = self.config.aliases.get(facts.model)
        if alias is not None and alias.upstream is not None:
            return self._direct_route(alias.upstream, alias.model or facts.model, api)
        if alias is not None and alias.tier is not None:
            tier, reason = alias.tier, f"alias:{facts.model}"
        else:
            tier, reason = await self._tier_by_request(tenant, facts, headers)
        tier = self._allowed_tier(key, tier)
        return self._tier_route(self.config.tiers[tier], api, reason)

    async def _tier_by_request(
        self, tenant: Tenant, facts: RequestFacts, headers: Mapping[str, str]
    ) -> tuple[str, str]:
        requested = headers.get("lynkr-tier")
        if requested is not None and tenant.key.tier_override:
            if requested not in self.config.tiers:
                raise InvalidRequestError(
                    f"lynkr-tier {requested!r} is not a tier; tiers: "
                    f"{', '.join(self.config.tiers)}"
                )
            return requested, "header"
        score = score_request(facts)
        scored = score.forced_tier if score.forced_tier in self.config.tiers else None
        reason = f"score={score.value}"
        if scored is None:
            scored = next(name for upper, name in self.config.bands if score.value <= upper)
        else:
            reason += f",forced={scored}"
        session = self._session_key(tenant, facts, headers)
        pinned = await self._pinned_tier(session)
        if pinned is not None and pinned in self.config.tiers:
            if facts.in_tool_loop:
                return pinned, f"{reason},sticky:tool_loop"
            if self._tier_rank[scored] <= self._tier_rank[pinned]:
                return pinned, f"{reason},sticky"
            reason += ",escalated"
        await self._pin(session, scored)
        return scored, reason

    def _session_key(
        self, tenant: Tenant, facts: RequestFacts, headers: Mapping[str, str]
    ) -> str:
        for header in SESSION_HEADERS:
            value = headers.get(header)
            if value:
                return f"{tenant.key.id}:h:{value}"
        return f"{tenant.key.id}:d:{facts.first_messages_digest}"

    async def _pinned_tier(self, session: str) -> str | None:
        cached = self._sessions.get(session)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        try:
            tier = await self.store.session_tier(session, max_age_s=self.config.sticky_ttl_s)
        except StoreError as exc:
            logger.warning("session lookup failed, routing by score alone: %s", exc)
            return None
        if tier is not None:
            self._remember_session(session, tier)
        return tier

    async def _pin(self, session: str, tier: str) -> None:
        try:
            await self.store.pin_session(session, tier, ttl_s=self.config.sticky_ttl_s)
        except StoreError as exc:
            logger.warning("session pin failed: %s", exc)
            return
        self._remember_session(session, tier)

    def _remember_session(self, session: str, tier: str) -> None:
        sessions = self._sessions
        sessions.pop(session, None)
        if len(sessions) >= SESSION_CACHE_SIZE:
            del sessions[next(iter(sessions))]
        lifetime = min(SESSION_CACHE_S, self.config.sticky_ttl_s)
        sessions[session] = (tier, time.monotonic() + lifetime)

    def served_route(self, route: Route, upstream_name: str) -> Route:
        """Return the route of the chain member that served, priced at its model."""
        tier = self.config.tiers.get(route.tier)
        pair = tier.model_for(upstream_name) if tier is not None else None
        if pair is None or pair[0].name == route.upstream.name:
            return route
        upstream, model = pair
        price, unpriced = self._price(model)
        reason = f"{route.reason},fallback:{upstream.name}"
        return Route(route.tier, upstream, model, price, unpriced, reason, route.max_output_estimate)

    def pass_through_tier(self, path: str) -> Tier:
        """Return the tier that serves a non-LLM path such as /v1/models."""
        api = "anthropic_messages" if path.startswith("/v1/messages") else "openai_chat"
        default = self.config.tiers[self.config.default_tier]
        if default.upstream.serves(api):
            return default
        return next(
            (tier for tier in self.config.tiers.values() if tier.upstream.serves(api)),
            default,
        )

    def _allowed_tier(self, key: KeyRecord, tier: str) -> str:
        if key.tiers is None or tier in key.tiers:
            return tier
        rank = self._tier_rank[tier]
        allowed = sorted(key.tiers, key=lambda name: (abs(self._tier_rank[name] - rank), self._tier_rank[name]))
        if not allowed:
            raise PermissionDeniedError(f"virtual key {key.id!r} may use no tier")
        return allowed[0]

    def _tier_route(self, tier: Tier, api: str, reason: str) -> Route:
        self._check_api(tier.upstream, api, f"tier {tier.name}")
        price, unpriced = self._price(tier.model)
        return Route(tier.name, tier.upstream, tier.model, price, unpriced, reason, tier.max_output_estimate)

    def _direct_route(self, upstream: Upstream, model: str, api: str) -> Route:
        self._check_api(upstream, api, f"upstream {upstream.name}")
        price, unpriced = self._price(model)
        ceiling = max((t.max_output_estimate for t in self.config.tiers.values()), default=4096)
        return Route("DIRECT", upstream, model, price, unpriced, f"alias:{model}", ceiling)

    def _check_api(self, upstream: Upstream, api: str, what: str) -> None:
        variable = missing_credential(upstream)
        if variable is not None:
            raise UpstreamUnavailableError(
                f"{what} is served by upstream {upstream.name!r}, whose API key "
                f"variable {variable} is not set; set it and restart lynkr-extproc"
            )
        if not dispatch.can_serve(upstream, api):
            raise InvalidRequestError(
                f"{what} is served by {upstream.provider} upstream {upstream.name!r}, "
                f"which does not accept {api} requests, and they cannot be translated "
                f"to its API; route this model to another tier"
            )

    def _price(self, model: str) -> tuple[Price, bool]:
        price = self.config.prices.lookup(model)
        if price is not None:
            return price, False
        if self.config.unpriced_price is not None:
            return self.config.unpriced_price, True
        return Price(input=0, output=0), True  # type: ignore[arg-type]

    # -- admission ---------------------------------------------------------

    def charges(self, tenant: Tenant) -> list[Charge]:
        """Return every budget window of the tenant, in level order."""
        key = tenant.key
        now = self.clock()
        ids = {
            "virtual_key": (key.id, key.id),
            "team": (key.team, key.team),
            "customer": (tenant.customer, f"{key.org}/{tenant.customer}"),
            "org": (key.org, key.org),
        }
        charges = []
        for level in LEVELS:
            shown, counter = ids[level]
            if shown is None:
                continue
            windows = self.admin.windows_for(level, shown) if self.admin is not None else None
            if windows is None:
                windows = self.config.budgets.windows_for(level, shown)
            for window in windows:
                period, starts, resets = self._period(window.period, now)
                charges.append(
                    Charge(
                        level, shown, counter, window.name, period, window.limit_nanos,
                        resets, starts_at=starts, org=key.org,
                    )
                )
        return charges

    def _period(self, period: str, now: datetime) -> tuple[str, datetime | None, datetime | None]:
        """Return period_range for `now`, reusing the last result until the period ends."""
        zone = self.config.timezone
        cached = self._periods.get((period, zone))
        if cached is not None:
            starts, resets = cached[1], cached[2]
            if (starts is None or starts <= now) and (resets is None or now < resets):
                return cached
        result = period_range(period, now, zone)
        self._periods[(period, zone)] = result
        return result

    def estimate(self, route: Route, facts: RequestFacts) -> tuple[int, int]:
        """Return (input tokens, expected output tokens) for the admission hold."""
        input_tokens = (
            estimate_tokens(facts.text)
            + math.ceil(facts.tools_chars / 4)
            + facts.image_count * IMAGE_TOKEN_ESTIMATE
        )
        ceiling = route.max_output_estimate
        cap = facts.output_cap
        if self.config.budgets.strict_output_hold:
            expected = cap if cap is not None else ceiling
        else:
            expected = min(cap, ceiling) if cap is not None else ceiling
        return input_tokens, expected

    async def admit(
        self, tenant: Tenant, route: Route, facts: RequestFacts, hold_id: str
    ) -> Admission:
        """Reserve the estimate on every window, or raise the client error."""
        charges = self.charges(tenant)
        if route.unpriced and self.config.unpriced_price is None and charges:
            raise ModelNotPricedError(
                f"model {route.model!r} has no price, so its spend cannot be "
                f"budgeted; add it under pricing.models"
            )
        input_tokens, output_tokens = self.estimate(route, facts)
        estimate = route.price.estimate_nanos(input_tokens, output_tokens)
        try:
            with self.metrics.store_call("reserve"):
                result = await self.store.reserve(
                    hold_id, charges, estimate, ttl_s=self.config.budgets.hold_ttl_s
                )
        except StoreError as exc:
            return self._store_failed(exc, route, charges, hold_id, input_tokens)
        if isinstance(result, Rejection):
            self.metrics.rejections.labels(result.charge.level, result.charge.window).inc()
            raise self._exceeded(result)
        return Admission(route, result, input_tokens)

    def _store_failed(
        self, exc: StoreError, route: Route, charges: list[Charge], hold_id: str, input_tokens: int
    ) -> Admission:
        if self.config.store_failure == "closed":
            logger.error("budget store failed, rejecting: %s", exc)
            raise BudgetUnavailableError(
                "the budget store is unavailable, so spend cannot be checked; retry shortly"
            ) from exc
        self.fail_open_admissions += 1
        self.metrics.fail_open.inc()
        now = time.monotonic()
        if now - self._fail_open_logged_at >= FAIL_OPEN_LOG_INTERVAL_S:
            logger.warning(
                "budget store failed, admitting without a hold (fail open); %d such "
                "admission(s) so far, their spend is charged when the store returns: %s",
                self.fail_open_admissions, exc,
            )
            self._fail_open_logged_at = now
        return Admission(route, Reservation(hold_id, tuple(charges), 0, None), input_tokens)

    def _exceeded(self, rejection: Rejection) -> BudgetExceededError:
        charge = rejection.charge
        spent = rejection.committed_nanos + rejection.held_nanos
        exhausted = Exhausted(
            level=charge.level,
            id=charge.id,
            window=charge.window,
            limit_usd=display_usd(charge.limit_nanos),
            spent_usd=display_usd(spent),
            resets_at=charge.resets_at,
        )
        return BudgetExceededError(exhausted, now=self.clock())

    async def admit_with_downgrade(
        self, tenant: Tenant, route: Route, facts: RequestFacts, api: str
    ) -> Admission:
        """Admit on `route`; when enabled, fall back to cheaper tiers that fit."""
        hold_id = uuid.uuid4().hex
        try:
            return await self.admit(tenant, route, facts, hold_id)
        except BudgetExceededError:
            if not self.config.budgets.downgrade or facts.in_tool_loop or route.tier not in self._tier_rank:
                raise
            for name in reversed(list(self.config.tiers)[: self._tier_rank[route.tier]]):
                tier = self.config.tiers[name]
                if not dispatch.can_serve(tier.upstream, api):
                    continue
                cheaper = self._tier_route(tier, api, f"{route.reason},downgraded:budget")
                try:
                    return await self.admit(tenant, cheaper, facts, hold_id)
                except BudgetExceededError:
                    continue
            raise

    # -- spend -------------------------------------------------------------

    def record(
        self,
        *,
        request_id: str,
        tenant: Tenant,
        admission: Admission,
        usage: Usage,
        usage_source: str,
        status: int,
        outcome: str,
        started: datetime,
        flags: set[str],
        provider_cost_nanos: int | None = None,
        route: Route | None = None,
    ) -> SpendRecord:
        """Build the spend record; `route` is the one that served, if not the admitted one."""
        route = route or admission.route
        flags = set(flags)
        if route.unpriced:
            flags.add("unpriced")
        now = self.clock()
        return SpendRecord(
            request_id=request_id,
            # The start time, so the record falls in the period it was charged to.
            time=started,
            key_id=tenant.key.id,
            team=tenant.key.team,
            customer=tenant.customer,
            org=tenant.key.org,
            tier=route.tier,
            provider=route.upstream.provider,
            upstream=route.upstream.name,
            model=route.model,
            usage=usage,
            cost_nanos=route.price.cost_nanos(usage),
            usage_source=usage_source,
            status=status,
            outcome=outcome,
            latency_ms=max(0, int((now - started).total_seconds() * 1000)),
            flags=tuple(sorted(flags)),
            provider_cost_nanos=provider_cost_nanos,
        )


def _presented_key(headers: Mapping[str, str]) -> str | None:
    value = headers.get("lynkr-virtual-key")
    if value:
        return value.strip()
    authorization = headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    value = headers.get("x-api-key")
    if value:
        return value.strip()
    return None
