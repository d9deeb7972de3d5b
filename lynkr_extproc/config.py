"""The lynkr.yaml configuration: parsing, validation and defaults.

Every error names the path of the bad value and what to write instead,
for example `config tiers.SIMPLE.upstream: 'lokal' is not defined under
upstreams; defined: local, claude`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from .errors import ConfigError
from .money import parse_usd, usd_to_nanos
from .pricing import Price, PriceTable, load_price_table, parse_price
from .providers import PROVIDERS, UpstreamTarget

LEVELS = ("virtual_key", "team", "customer", "org")
PERIODS = {"day": "daily", "week": "weekly", "month": "monthly", "total": "total"}
DEFAULT_TIERS = ("SIMPLE", "MEDIUM", "COMPLEX", "REASONING")
DEFAULT_BANDS = {"SIMPLE": 19, "MEDIUM": 50, "COMPLEX": 75, "REASONING": 100}
MAX_LIMIT_USD = 9_000_000
"""Largest window limit: the Redis script compares exactly up to 2^53 nano-dollars."""
_SIGV4_PROVIDERS = ("bedrock", "bedrock_converse")
"""Providers whose requests Envoy can sign with AWS SigV4 (`auth: sigv4`)."""


@dataclass(frozen=True)
class Upstream:
    name: str
    provider: str
    scheme: str
    host: str
    port: int
    base_path: str
    credential: str | None = field(default=None, repr=False)
    headers: Mapping[str, str] = field(default_factory=dict)
    api_version: str | None = None
    auth: str = "key"
    region: str | None = None
    """AWS region, for Bedrock requests signed with SigV4."""

    @property
    def cluster(self) -> str:
        return f"upstream_{self.name}"

    def serves(self, api: str) -> bool:
        """Return True when the upstream accepts `api` without translation."""
        return api in PROVIDERS[self.provider].apis

    def target(self) -> UpstreamTarget:
        return UpstreamTarget(
            name=self.name,
            provider=self.provider,
            credential=self.credential,
            headers=self.headers,
            api_version=self.api_version,
            auth=self.auth,
        )


@dataclass(frozen=True)
class Tier:
    name: str
    upstream: Upstream
    model: str
    max_output_estimate: int
    fallback: tuple[tuple[Upstream, str], ...] = ()
    """(upstream, model) tried in order when the one before fails."""

    def attempts(self) -> tuple[tuple[Upstream, str], ...]:
        """Return the primary and every fallback, in the order they are tried."""
        return ((self.upstream, self.model), *self.fallback)

    def model_for(self, upstream_name: str) -> tuple[Upstream, str] | None:
        return next((pair for pair in self.attempts() if pair[0].name == upstream_name), None)


@dataclass(frozen=True)
class Window:
    name: str
    period: str
    limit_nanos: int


@dataclass(frozen=True)
class KeyRecord:
    """A virtual key, known only by the SHA-256 of its secret."""

    id: str
    sha256: str
    team: str
    org: str
    customers: frozenset[str] | None = None
    """Customers the key may attribute spend to; None means none, "*" any."""
    tiers: frozenset[str] | None = None
    models: frozenset[str] | None = None
    tier_override: bool = False


@dataclass(frozen=True)
class AliasTarget:
    tier: str | None = None
    upstream: Upstream | None = None
    model: str | None = None


@dataclass(frozen=True)
class Budgets:
    windows: Mapping[str, Mapping[str, tuple[Window, ...]]]
    defaults: Mapping[str, tuple[Window, ...]]
    strict_output_hold: bool = False
    hold_ttl_s: float = 900.0
    downgrade: bool = False

    def windows_for(self, level: str, ident: str) -> tuple[Window, ...]:
        own = self.windows.get(level, {}).get(ident)
        return own if own is not None else self.defaults.get(level, ())


@dataclass(frozen=True)
class EnvoySettings:
    listen_host: str = "127.0.0.1"
    listen_port: int = 10000
    admin_port: int = 9901
    message_timeout_ms: int = 2000
    max_message_timeout_ms: int = 10000
    buffer_limit_bytes: int = 64 * 1024 * 1024
    route_timeout_s: int = 600
    ext_proc_addresses: tuple[str, ...] = ()
    """Addresses at which Envoy reaches ext_proc servers; server.listen if empty."""


@dataclass(frozen=True)
class AdminSettings:
    """The `admin:` section: keys and budgets changed at run time (lynkr_extproc.admin)."""

    listen: str | None
    """host:port of the admin gRPC API; None applies admin changes without serving the API."""
    token_env: str | None
    """Environment variable holding the bearer token of the admin API."""
    token: str | None = field(default=None, repr=False)
    """The token read from token_env when the config was loaded; set whenever listen is."""
    poll_interval_s: float = 2.0
    """How often each replica reads changes made through other replicas."""
    reference_model: str | None = None
    """Default model of `spend report`'s counterfactual cost column."""


@dataclass(frozen=True)
class Config:
    listen: str
    metrics_listen: str | None
    """host:port of the Prometheus /metrics endpoint; None turns it off."""
    log_format: str
    workers: int
    """ext_proc processes `serve` runs, on server.listen's port and the next ones."""
    event_loop: str
    """"uvloop" (the default) or "asyncio": the event loop `serve` runs on."""
    store_url: str
    ledger_url: str
    """Spend ledger of the Redis store: sqlite:///path or postgresql://..."""
    outbox_url: str
    """Local durable outbox of the Redis store, a SQLite file."""
    store_timeout_ms: int
    store_failure: str
    timezone: ZoneInfo
    max_request_bytes: int
    anonymous: KeyRecord | None
    upstreams: Mapping[str, Upstream]
    tiers: Mapping[str, Tier]
    bands: tuple[tuple[int, str], ...]
    default_tier: str
    aliases: Mapping[str, AliasTarget]
    sticky_ttl_s: float
    prices: PriceTable
    unpriced_price: Price | None
    budgets: Budgets
    keys: Mapping[str, KeyRecord]
    """Key records by SHA-256 hex digest of the secret."""
    inject_stream_usage: bool
    forward_usage_chunk: bool
    envoy: EnvoySettings
    source: Path | None = None
    admin: AdminSettings | None = None
    """None when lynkr.yaml has no `admin:` section: no admin API, no admin state."""


def load_config(path: str | Path) -> Config:
    """Read and validate a lynkr.yaml file."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(str(path), f"cannot be read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), f"is not valid YAML: {exc}") from None
    config = parse_config(raw if raw is not None else {}, base_dir=path.parent)
    return _replace_source(config, path)


def _replace_source(config: Config, path: Path) -> Config:
    from dataclasses import replace

    return replace(config, source=path.resolve())


def parse_config(raw: Any, *, base_dir: Path = Path(".")) -> Config:
    """Validate a parsed YAML document and build the Config."""
    root = _mapping(raw, "(top level)")
    _only(root, "(top level)", {
        "server", "envoy", "upstreams", "tiers", "routing", "pricing",
        "budgets", "keys", "stream_usage", "admin",
    })
    server = _mapping(root.get("server", {}), "server")
    _only(server, "server", {
        "listen", "store", "ledger", "outbox", "store_timeout_ms", "store_failure",
        "timezone", "max_request_bytes", "anonymous", "metrics_listen", "log_format", "workers",
        "event_loop",
    })
    upstreams = _parse_upstreams(root.get("upstreams"))
    tiers = _parse_tiers(root.get("tiers"), upstreams)
    routing = _mapping(root.get("routing", {}), "routing")
    _only(routing, "routing", {
        "bands", "default_tier", "aliases", "sticky_ttl_s", "budget_downgrade",
    })
    pricing = _mapping(root.get("pricing", {}), "pricing")
    _only(pricing, "pricing", {"models", "aliases", "unpriced", "include_defaults"})
    prices = load_price_table(
        pricing.get("models"),
        pricing.get("aliases"),
        include_defaults=_bool(pricing.get("include_defaults", True), "pricing.include_defaults"),
    )
    stream_usage = _mapping(root.get("stream_usage", {}), "stream_usage")
    _only(stream_usage, "stream_usage", {"inject", "forward_to_client"})
    keys = _parse_keys(root.get("keys", []), tiers)
    default_tier = _str(routing.get("default_tier", _middle_tier(tiers)), "routing.default_tier")
    if default_tier not in tiers:
        raise ConfigError("routing.default_tier", f"{default_tier!r} is not a tier; tiers: {', '.join(tiers)}")
    return Config(
        listen=_address(server.get("listen", "127.0.0.1:50051"), "server.listen"),
        metrics_listen=(
            _address(server["metrics_listen"], "server.metrics_listen")
            if server.get("metrics_listen") is not None
            else None
        ),
        log_format=_choice(server.get("log_format", "text"), "server.log_format", ("text", "json")),
        workers=_int(server.get("workers", 1), "server.workers", 1),
        event_loop=_choice(server.get("event_loop", "uvloop"), "server.event_loop", ("uvloop", "asyncio")),
        store_url=_store_url(server.get("store", "sqlite:///lynkr.db"), base_dir),
        ledger_url=_store_url(
            server.get("ledger", "sqlite:///lynkr-ledger.db"), base_dir, "server.ledger",
            schemes=("sqlite", "postgresql", "postgres"),
        ),
        outbox_url=_store_url(server.get("outbox", "sqlite:///lynkr-outbox.db"), base_dir, "server.outbox", schemes=("sqlite",)),
        store_timeout_ms=_int(server.get("store_timeout_ms", 1000), "server.store_timeout_ms", 1),
        store_failure=_choice(server.get("store_failure", "closed"), "server.store_failure", ("closed", "open")),
        timezone=_timezone(server.get("timezone", "UTC")),
        max_request_bytes=_int(server.get("max_request_bytes", 32 * 1024 * 1024), "server.max_request_bytes", 1024),
        anonymous=_parse_anonymous(server.get("anonymous")),
        upstreams=upstreams,
        tiers=tiers,
        bands=_parse_bands(routing.get("bands", DEFAULT_BANDS), tiers),
        default_tier=default_tier,
        aliases=_parse_aliases(routing.get("aliases", {}), tiers, upstreams),
        sticky_ttl_s=float(_int(routing.get("sticky_ttl_s", 3600), "routing.sticky_ttl_s", 0)),
        prices=prices,
        unpriced_price=_parse_unpriced(pricing.get("unpriced", "reject")),
        budgets=_parse_budgets(root.get("budgets", {}), routing),
        keys=keys,
        inject_stream_usage=_bool(stream_usage.get("inject", True), "stream_usage.inject"),
        forward_usage_chunk=_bool(stream_usage.get("forward_to_client", False), "stream_usage.forward_to_client"),
        envoy=_parse_envoy(root.get("envoy", {})),
        admin=_parse_admin(root.get("admin"), server, prices),
    )


def _middle_tier(tiers: Mapping[str, Tier]) -> str:
    names = list(tiers)
    return "MEDIUM" if "MEDIUM" in tiers else names[min(1, len(names) - 1)]


def _parse_upstreams(raw: Any) -> dict[str, Upstream]:
    entries = _mapping(raw, "upstreams")
    if not entries:
        raise ConfigError("upstreams", "is empty; define at least one upstream")
    upstreams = {}
    for name, entry in entries.items():
        path = f"upstreams.{name}"
        _check_name(str(name), path)
        entry = _mapping(entry, path)
        _only(entry, path, {"provider", "url", "api_key", "api_key_env", "headers", "api_version", "auth", "region"})
        provider = _choice(entry.get("provider"), f"{path}.provider", tuple(PROVIDERS))
        auth = _choice(entry.get("auth", "key"), f"{path}.auth", ("key", "sigv4"))
        if auth == "sigv4" and provider not in _SIGV4_PROVIDERS:
            raise ConfigError(
                f"{path}.auth",
                f"sigv4 signing is for providers bedrock and bedrock_converse, not {provider}; use key",
            )
        region = entry.get("region")
        if auth == "sigv4" and not isinstance(region, str):
            raise ConfigError(f"{path}.region", "missing; sigv4 signing needs the AWS region, e.g. us-east-1")
        headers = _mapping(entry.get("headers", {}), f"{path}.headers")
        for header, value in headers.items():
            _str(value, f"{path}.headers.{header}")
        url = urlsplit(_str(entry.get("url"), f"{path}.url"))
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ConfigError(f"{path}.url", f"expected http://host:port or https://host, got {entry.get('url')!r}")
        upstreams[str(name)] = Upstream(
            name=str(name),
            provider=provider,
            scheme=url.scheme,
            host=url.hostname,
            port=url.port or (443 if url.scheme == "https" else 80),
            base_path=url.path.rstrip("/"),
            credential=_credential(entry, path),
            headers={str(k).lower(): str(v) for k, v in headers.items()},
            api_version=_str(entry["api_version"], f"{path}.api_version") if "api_version" in entry else None,
            auth=auth,
            region=region,
        )
    return upstreams


def _credential(entry: Mapping[str, Any], path: str) -> str | None:
    if "api_key" in entry and "api_key_env" in entry:
        raise ConfigError(path, "set api_key or api_key_env, not both")
    if "api_key_env" in entry:
        variable = _str(entry["api_key_env"], f"{path}.api_key_env")
        value = os.environ.get(variable)
        if not value:
            # The service still starts; requests routed here get a 503
            # that names the variable.
            return _MissingCredential(variable)
        return value
    if "api_key" in entry:
        return _str(entry["api_key"], f"{path}.api_key")
    return None


class _MissingCredential(str):
    """An unset credential variable, kept to name it in errors."""

    def __new__(cls, variable: str) -> "_MissingCredential":
        instance = super().__new__(cls, "")
        instance.variable = variable  # type: ignore[attr-defined]
        return instance


def missing_credential(upstream: Upstream) -> str | None:
    """Return the unset environment variable of an upstream's key, if any."""
    return getattr(upstream.credential, "variable", None)


def _parse_tiers(raw: Any, upstreams: Mapping[str, Upstream]) -> dict[str, Tier]:
    entries = _mapping(raw, "tiers")
    if not entries:
        raise ConfigError("tiers", f"is empty; define tiers such as {', '.join(DEFAULT_TIERS)}")
    tiers = {}
    for name, entry in entries.items():
        path = f"tiers.{name}"
        _check_name(str(name), path)
        entry = _mapping(entry, path)
        _only(entry, path, {"upstream", "model", "max_output_estimate", "fallback"})
        primary = _upstream_ref(entry, path, upstreams)
        fallback = entry.get("fallback", [])
        if not isinstance(fallback, list):
            raise ConfigError(f"{path}.fallback", "expected a list of {upstream: NAME, model: MODEL}")
        chain = tuple(_upstream_ref(_mapping(item, f"{path}.fallback[{i}]"), f"{path}.fallback[{i}]", upstreams) for i, item in enumerate(fallback))
        names = [primary[0].name] + [upstream.name for upstream, _ in chain]
        if len(set(names)) != len(names):
            raise ConfigError(f"{path}.fallback", "each upstream may appear once in a tier's chain")
        if chain and any(upstream.auth == "sigv4" for upstream, _ in (primary, *chain)):
            raise ConfigError(
                f"{path}.fallback",
                "an upstream signed with sigv4 cannot be part of a fallback chain; "
                "use a Bedrock API key (api_key_env) for it instead",
            )
        tiers[str(name)] = Tier(
            name=str(name),
            upstream=primary[0],
            model=primary[1],
            max_output_estimate=_int(entry.get("max_output_estimate", 4096), f"{path}.max_output_estimate", 1),
            fallback=chain,
        )
    return tiers


def _upstream_ref(entry: Mapping[str, Any], path: str, upstreams: Mapping[str, Upstream]) -> tuple[Upstream, str]:
    if path.rpartition(".")[2].startswith("fallback"):
        _only(entry, path, {"upstream", "model"})
    upstream_name = _str(entry.get("upstream"), f"{path}.upstream")
    if upstream_name not in upstreams:
        raise ConfigError(
            f"{path}.upstream",
            f"{upstream_name!r} is not defined under upstreams; defined: {', '.join(upstreams)}",
        )
    return upstreams[upstream_name], _str(entry.get("model"), f"{path}.model")


def _parse_bands(raw: Any, tiers: Mapping[str, Tier]) -> tuple[tuple[int, str], ...]:
    bands = _mapping(raw, "routing.bands")
    result = []
    for name, upper in bands.items():
        if name not in tiers:
            raise ConfigError(f"routing.bands.{name}", f"is not a tier; tiers: {', '.join(tiers)}")
        result.append((_int(upper, f"routing.bands.{name}", 0), str(name)))
    result.sort()
    if not result or result[-1][0] < 100:
        raise ConfigError("routing.bands", "the highest band must reach 100, e.g. {SIMPLE: 19, MEDIUM: 50, COMPLEX: 75, REASONING: 100}")
    return tuple(result)


def _parse_aliases(raw: Any, tiers: Mapping[str, Tier], upstreams: Mapping[str, Upstream]) -> dict[str, AliasTarget]:
    aliases = {}
    for name, target in _mapping(raw, "routing.aliases").items():
        path = f"routing.aliases.{name}"
        if isinstance(target, str):
            if target not in tiers:
                raise ConfigError(path, f"{target!r} is not a tier; tiers: {', '.join(tiers)}")
            aliases[str(name)] = AliasTarget(tier=target)
            continue
        target = _mapping(target, path)
        _only(target, path, {"upstream", "model"})
        upstream = _str(target.get("upstream"), f"{path}.upstream")
        if upstream not in upstreams:
            raise ConfigError(f"{path}.upstream", f"{upstream!r} is not defined under upstreams")
        aliases[str(name)] = AliasTarget(upstream=upstreams[upstream], model=_str(target.get("model"), f"{path}.model"))
    return aliases


def _parse_unpriced(raw: Any) -> Price | None:
    if raw == "reject":
        return None
    if isinstance(raw, Mapping):
        return parse_price(raw, "pricing.unpriced")
    raise ConfigError("pricing.unpriced", f"expected 'reject' or {{input: ..., output: ...}}, got {raw!r}")


def _parse_windows(raw: Any, path: str) -> tuple[Window, ...]:
    if not isinstance(raw, list):
        raise ConfigError(path, f"expected a list of windows like [{{period: month, limit_usd: 100}}], got {raw!r}")
    windows = []
    for index, entry in enumerate(raw):
        where = f"{path}[{index}]"
        entry = _mapping(entry, where)
        _only(entry, where, {"period", "limit_usd", "name"})
        period = _choice(entry.get("period"), f"{where}.period", tuple(PERIODS))
        try:
            limit = parse_usd(entry.get("limit_usd"))
        except ValueError as exc:
            raise ConfigError(f"{where}.limit_usd", str(exc)) from None
        if limit < 0:
            raise ConfigError(f"{where}.limit_usd", f"is {limit}, expected a value >= 0 (0 suspends)")
        if limit > MAX_LIMIT_USD:
            raise ConfigError(
                f"{where}.limit_usd",
                f"is {limit}, above the largest supported limit of {MAX_LIMIT_USD} USD per window",
            )
        windows.append(Window(str(entry.get("name", PERIODS[period])), period, usd_to_nanos(limit)))
    return tuple(windows)


def _parse_budgets(raw: Any, routing: Mapping[str, Any]) -> Budgets:
    budgets = _mapping(raw, "budgets")
    _only(budgets, "budgets", {"strict_output_hold", "hold_ttl_s", "defaults", *LEVELS})
    defaults = _mapping(budgets.get("defaults", {}), "budgets.defaults")
    _only(defaults, "budgets.defaults", set(LEVELS))
    windows: dict[str, dict[str, tuple[Window, ...]]] = {}
    for level in LEVELS:
        entries = _mapping(budgets.get(level, {}), f"budgets.{level}")
        windows[level] = {str(ident): _parse_windows(value, f"budgets.{level}.{ident}") for ident, value in entries.items()}
    return Budgets(
        windows=windows,
        defaults={level: _parse_windows(value, f"budgets.defaults.{level}") for level, value in defaults.items()},
        strict_output_hold=_bool(budgets.get("strict_output_hold", False), "budgets.strict_output_hold"),
        hold_ttl_s=float(_int(budgets.get("hold_ttl_s", 900), "budgets.hold_ttl_s", 1)),
        downgrade=_bool(routing.get("budget_downgrade", False), "routing.budget_downgrade"),
    )


_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _parse_keys(raw: Any, tiers: Mapping[str, Tier]) -> dict[str, KeyRecord]:
    if not isinstance(raw, list):
        raise ConfigError("keys", f"expected a list of keys, got {raw!r}")
    keys: dict[str, KeyRecord] = {}
    seen_ids: set[str] = set()
    for index, entry in enumerate(raw):
        path = f"keys[{index}]"
        entry = _mapping(entry, path)
        _only(entry, path, {"id", "sha256", "team", "org", "customers", "tiers", "models", "tier_override"})
        digest = _str(entry.get("sha256"), f"{path}.sha256").lower()
        if not _SHA256.match(digest):
            raise ConfigError(f"{path}.sha256", "expected 64 hex digits; compute it with `lynkr-extproc hash-key`")
        record = KeyRecord(
            id=_str(entry.get("id"), f"{path}.id"),
            sha256=digest,
            team=_str(entry.get("team"), f"{path}.team"),
            org=_str(entry.get("org"), f"{path}.org"),
            customers=_name_set(entry.get("customers"), f"{path}.customers"),
            tiers=_name_set(entry.get("tiers"), f"{path}.tiers"),
            models=_name_set(entry.get("models"), f"{path}.models"),
            tier_override=_bool(entry.get("tier_override", False), f"{path}.tier_override"),
        )
        for tier in record.tiers or ():
            if tier not in tiers:
                raise ConfigError(f"{path}.tiers", f"{tier!r} is not a tier; tiers: {', '.join(tiers)}")
        if record.id in seen_ids or digest in keys:
            raise ConfigError(path, f"key {record.id!r} is defined twice")
        seen_ids.add(record.id)
        keys[digest] = record
    return keys


def _parse_anonymous(raw: Any) -> KeyRecord | None:
    if raw is None or raw is False:
        return None
    entry = _mapping(raw, "server.anonymous")
    _only(entry, "server.anonymous", {"id", "team", "org"})
    return KeyRecord(
        id=_str(entry.get("id", "anonymous"), "server.anonymous.id"),
        sha256="",
        team=_str(entry.get("team", "anonymous"), "server.anonymous.team"),
        org=_str(entry.get("org", "anonymous"), "server.anonymous.org"),
    )


def _parse_envoy(raw: Any) -> EnvoySettings:
    entry = _mapping(raw, "envoy")
    _only(entry, "envoy", {
        "listen", "admin_port", "message_timeout_ms", "max_message_timeout_ms",
        "buffer_limit_bytes", "route_timeout_s", "ext_proc_address",
    })
    host, _, port = _address(entry.get("listen", "127.0.0.1:10000"), "envoy.listen").rpartition(":")
    message_timeout = _int(entry.get("message_timeout_ms", 2000), "envoy.message_timeout_ms", 1)
    return EnvoySettings(
        listen_host=host,
        listen_port=int(port),
        admin_port=_int(entry.get("admin_port", 9901), "envoy.admin_port", 1),
        message_timeout_ms=message_timeout,
        max_message_timeout_ms=_int(entry.get("max_message_timeout_ms", 10000), "envoy.max_message_timeout_ms", message_timeout),
        buffer_limit_bytes=_int(entry.get("buffer_limit_bytes", 64 * 1024 * 1024), "envoy.buffer_limit_bytes", 1024),
        route_timeout_s=_int(entry.get("route_timeout_s", 600), "envoy.route_timeout_s", 0),
        ext_proc_addresses=_addresses(entry.get("ext_proc_address", []), "envoy.ext_proc_address"),
    )


def _parse_admin(raw: Any, server: Mapping[str, Any], prices: PriceTable) -> AdminSettings | None:
    if raw is None:
        return None
    entry = _mapping(raw, "admin")
    _only(entry, "admin", {"listen", "token_env", "poll_interval_s", "reference_model"})

    listen = _address(entry["listen"], "admin.listen") if entry.get("listen") is not None else None
    taken = {
        server.get("listen", "127.0.0.1:50051"): "server.listen",
        server.get("metrics_listen"): "server.metrics_listen",
    }
    if listen is not None and listen in taken:
        raise ConfigError("admin.listen", f"{listen!r} is also {taken[listen]}; give the admin API its own port")

    token_env = _str(entry["token_env"], "admin.token_env") if "token_env" in entry else None
    if listen is not None and token_env is None:
        raise ConfigError(
            "admin.token_env",
            "missing; name the environment variable that holds the admin API's bearer token",
        )
    token = os.environ.get(token_env) if token_env is not None else None
    if listen is not None:
        _check_admin_token(token, str(token_env))

    interval = entry.get("poll_interval_s", 2)
    if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not 0.05 <= interval <= 3600:
        raise ConfigError("admin.poll_interval_s", f"expected seconds between 0.05 and 3600, got {interval!r}")
    reference = entry.get("reference_model")
    if reference is not None and prices.lookup(_str(reference, "admin.reference_model")) is None:
        raise ConfigError("admin.reference_model", f"{reference!r} has no price; add it under pricing.models")

    return AdminSettings(
        listen=listen,
        token_env=token_env,
        token=token or None,
        poll_interval_s=float(interval),
        reference_model=reference,
    )


MIN_ADMIN_TOKEN_CHARS = 16


def _check_admin_token(token: str | None, variable: str) -> None:
    if not token:
        raise ConfigError(
            "admin.token_env",
            f"environment variable {variable} is not set; set it to a random secret, "
            "e.g. the output of `openssl rand -hex 32`",
        )
    if len(token) < MIN_ADMIN_TOKEN_CHARS:
        raise ConfigError(
            "admin.token_env",
            f"{variable} is {len(token)} characters long; use a random secret of at least "
            f"{MIN_ADMIN_TOKEN_CHARS}, e.g. the output of `openssl rand -hex 32`",
        )


_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _expand_env(text: str, path: str) -> str:
    """Replace ${NAME} with the environment variable NAME, which must be set.

    Store URLs may carry passwords: they come from the environment, for
    example a Kubernetes Secret, instead of the config file.
    """

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise ConfigError(path, f"environment variable {name} is not set")
        return quote(os.environ[name], safe="")

    return _ENV_REFERENCE.sub(value, text)


def env_references(text: str) -> list[str]:
    """Return the environment variables a store URL refers to as ${NAME}."""
    return _ENV_REFERENCE.findall(text)


def _store_url(raw: Any, base_dir: Path, path: str = "server.store", *, schemes: tuple[str, ...] = ("sqlite", "redis", "rediss")) -> str:
    url = _expand_env(_str(raw, path), path)
    scheme = url.partition("://")[0]
    if scheme not in schemes:
        examples = {
            "sqlite": "sqlite:///path/to/file.db",
            "redis": "redis://host:6379/0",
            "rediss": "rediss://host:6380/0",
            "postgresql": "postgresql://user@host:5432/db",
        }
        raise ConfigError(path, f"unsupported URL {url!r}; use {' or '.join(examples[s] for s in schemes)}")
    if scheme != "sqlite":
        return url
    if not url.startswith("sqlite:///"):
        raise ConfigError(path, f"expected sqlite:///path, got {url!r}")
    file = Path(url[len("sqlite:///"):])
    if not file.is_absolute():
        file = base_dir / file
    return f"sqlite:///{file.resolve()}"


def _timezone(raw: Any) -> ZoneInfo:
    name = _str(raw, "server.timezone")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError("server.timezone", f"unknown time zone {name!r}; use an IANA name such as UTC or Europe/Berlin") from None


_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def _check_name(name: str, path: str) -> None:
    if not _NAME.match(name):
        raise ConfigError(path, "names may contain only letters, digits, '_', '.' and '-'")


def _mapping(raw: Any, path: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError(path, f"expected a mapping, got {type(raw).__name__} {raw!r}")
    return {str(key): value for key, value in raw.items()}


def _only(entry: Mapping[str, Any], path: str, allowed: set[str]) -> None:
    unknown = sorted(set(entry) - allowed)
    if unknown:
        raise ConfigError(f"{path}.{unknown[0]}", f"unknown setting; allowed here: {', '.join(sorted(allowed))}")


def _str(raw: Any, path: str) -> str:
    if not isinstance(raw, str) or not raw:
        raise ConfigError(path, f"expected a non-empty string, got {raw!r}")
    return raw


def _int(raw: Any, path: str, minimum: int) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise ConfigError(path, f"expected a whole number, got {raw!r}")
    if raw < minimum:
        raise ConfigError(path, f"is {raw}, expected a value >= {minimum}")
    return raw


def _bool(raw: Any, path: str) -> bool:
    if not isinstance(raw, bool):
        raise ConfigError(path, f"expected true or false, got {raw!r}")
    return raw


def _choice(raw: Any, path: str, choices: tuple[str, ...]) -> str:
    if raw not in choices:
        raise ConfigError(path, f"expected one of {', '.join(choices)}, got {raw!r}")
    return raw


def _address(raw: Any, path: str) -> str:
    text = _str(raw, path)
    host, colon, port = text.rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(path, f"expected host:port, got {text!r}")
    return text


def _addresses(raw: Any, path: str) -> tuple[str, ...]:
    """Parse one host:port or a list of them."""
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list):
        raise ConfigError(path, f"expected host:port or a list of them, got {raw!r}")
    return tuple(_address(item, f"{path}[{index}]") for index, item in enumerate(items))


def _name_set(raw: Any, path: str) -> frozenset[str] | None:
    if raw is None:
        return None
    if raw == "*":
        return frozenset({"*"})
    if not isinstance(raw, list) or not all(isinstance(item, str) for item in raw):
        raise ConfigError(path, f"expected a list of names or \"*\", got {raw!r}")
    return frozenset(raw)
