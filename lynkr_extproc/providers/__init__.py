"""Provider adapters, one module each, by the name used in config."""

from __future__ import annotations

from . import (
    anthropic,
    azure,
    bedrock,
    bedrock_converse,
    databricks,
    llamacpp,
    lmstudio,
    ollama,
    openai,
    openrouter,
)
from .base import API_PATHS, Provider, UpstreamCall, UpstreamTarget

PROVIDERS: dict[str, Provider] = {
    module.PROVIDER.name: module.PROVIDER
    for module in (
        openai, anthropic, llamacpp, lmstudio, ollama, openrouter, databricks, azure,
        bedrock, bedrock_converse,
    )
}

__all__ = ["API_PATHS", "PROVIDERS", "Provider", "UpstreamCall", "UpstreamTarget"]
