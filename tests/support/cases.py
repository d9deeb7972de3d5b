"""The fixture price table and tenants of the real-world failure cases.

Prices are USD per million tokens and are test fixtures, not vendor list
prices.
"""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path
from typing import Any

from .ports import free_port

PRICES = {
    "gpt-4o-mini": {"input": 0.15, "cache_read": 0.075, "output": 0.60},
    "gpt-4o": {"input": 2.50, "cache_read": 1.25, "output": 10.00},
    "gpt-4o-2024-05-13": {"input": 5.00, "output": 15.00},
    "claude-sonnet-4": {"input": 3.00, "cache_read": 0.30, "cache_write": 3.75, "output": 15.00},
    "claude-haiku-4-5": {"input": 0.80, "cache_read": 0.08, "cache_write": 1.00, "output": 4.00},
    "fw-model": {"input": 1.40, "cache_read": 0.26, "output": 4.40},
    "reasoner-x": {"input": 30.00, "output": 180.00},
}


def secret(key_id: str) -> str:
    """The virtual key secret of a test key id."""
    return f"sk-test-{key_id}"


def key(key_id: str, team: str = "t1", org: str = "o1", **extra: Any) -> dict[str, Any]:
    entry = {"id": key_id, "sha256": hashlib.sha256(secret(key_id).encode()).hexdigest(), "team": team, "org": org}
    entry.update(extra)
    return entry


def document(
    store: Path | dict[str, str],
    *,
    openai_url: str = "http://127.0.0.1:9",
    anthropic_url: str = "http://127.0.0.1:9",
) -> dict[str, Any]:
    """A config with the case tiers: SIMPLE gpt-4o-mini .. REASONING reasoner-x.

    `store` is a SQLite file or the server settings of a backend.

    Client model names route by alias to the tier serving that model.
    """
    return {
        "server": {
            "listen": f"127.0.0.1:{free_port()}",
            "timezone": "UTC",
            **(store if isinstance(store, dict) else {"store": f"sqlite:///{store}"}),
        },
        "envoy": {"listen": f"127.0.0.1:{free_port()}", "admin_port": free_port()},
        "upstreams": {
            "openai": {"provider": "openai", "url": openai_url, "api_key": "provider-secret-openai"},
            "anthropic": {"provider": "anthropic", "url": anthropic_url, "api_key": "provider-secret-anthropic"},
        },
        "tiers": {
            "SIMPLE": {"upstream": "openai", "model": "gpt-4o-mini"},
            "MEDIUM": {"upstream": "openai", "model": "gpt-4o"},
            "COMPLEX": {"upstream": "anthropic", "model": "claude-sonnet-4"},
            "REASONING": {"upstream": "openai", "model": "reasoner-x"},
        },
        "routing": {
            "aliases": {
                "gpt-4o-mini": "SIMPLE",
                "gpt-4o": "MEDIUM",
                "claude-sonnet-4": "COMPLEX",
                "claude-haiku-4-5": {"upstream": "anthropic", "model": "claude-haiku-4-5"},
                "reasoner-x": "REASONING",
                "fw-model": {"upstream": "openai", "model": "fw-model"},
                "deepinfra/new-model-x": {"upstream": "openai", "model": "deepinfra/new-model-x"},
            },
        },
        "pricing": {"include_defaults": False, "models": copy.deepcopy(PRICES)},
        "keys": [key("vk-a", customers=["c-42"])],
        "budgets": {},
    }
