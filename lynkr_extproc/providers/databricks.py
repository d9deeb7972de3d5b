"""Databricks model serving: /serving-endpoints/{name}/invocations, bearer token.

The tier's model is the serving endpoint's name; the endpoint decides the
model, so the body carries no `model` field.
"""

from typing import Any, Mapping
from urllib.parse import quote

from .base import Provider, UpstreamTarget, without


class Databricks(Provider):
    name = "databricks"
    apis = frozenset({"openai_chat"})

    def path(self, target: UpstreamTarget, api: str, *, model: str, stream: bool) -> str:
        return f"/serving-endpoints/{quote(model, safe='')}/invocations"

    def shape_body(
        self, api: str, body: dict[str, Any], *, stream: bool, client_headers: Mapping[str, str]
    ) -> dict[str, Any]:
        return without(body, "model")


PROVIDER = Databricks()
