"""Envoy's 503 when the ext_proc service is down: a JSON error in the client's API."""

from __future__ import annotations

import http.client
import json
from pathlib import Path

import pytest

from lynkr_extproc import envoy_config
from lynkr_extproc.config import parse_config
from tests.support import cases
from tests.support.envoy import Envoy

pytestmark = pytest.mark.e2e


@pytest.fixture
def envoy_port(tmp_path: Path):
    """A generated Envoy whose ext_proc address has nothing listening."""
    document = cases.document(tmp_path / "store.db")
    document["envoy"]["ext_proc_address"] = f"127.0.0.1:{cases.free_port()}"
    config = parse_config(document)
    with Envoy(envoy_config.bootstrap(config)):
        yield config.envoy.listen_port


def post(port: int, path: str) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
        connection.request("POST", path, body=body, headers={"content-type": "application/json"})
        reply = connection.getresponse()
        return reply.status, {k.lower(): v for k, v in reply.getheaders()}, reply.read()
    finally:
        connection.close()


def test_anthropic_client_gets_anthropic_error(envoy_port):
    """A Messages client gets Anthropic's error shape, a message naming the service, retry-after."""
    status, headers, body = post(envoy_port, "/v1/messages")
    document = json.loads(body)
    assert status == 503
    assert headers["content-type"] == "application/json"
    assert headers["retry-after"] == "1"
    assert document["type"] == "error"
    assert document["error"]["type"] == "api_error"
    assert document["error"]["message"].startswith("lynkr-extproc, the budget service")
    assert "ext_proc_error" in document["error"]["message"]


def test_openai_client_gets_openai_error(envoy_port):
    """A Chat Completions client gets OpenAI's error shape with a code."""
    status, headers, body = post(envoy_port, "/v1/chat/completions")
    document = json.loads(body)
    assert status == 503
    assert headers["retry-after"] == "1"
    assert "type" not in document
    assert document["error"]["type"] == "api_error"
    assert document["error"]["code"] == "budget_service_unavailable"
    assert document["error"]["message"].startswith("lynkr-extproc, the budget service")
