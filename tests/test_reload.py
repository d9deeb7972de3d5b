"""Config reload on SIGHUP or file change, without dropping the running config."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import grpc
import yaml

from tests.support import cases
from tests.support.grpc_client import ExtProcStream, request_body, request_headers
from tests.support.processes import ServeProcess

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def decision(address: str) -> str:
    with grpc.insecure_channel(address) as channel:
        stream = ExtProcStream(channel)
        stream.send(request_headers("/v1/chat/completions", {"x-api-key": cases.secret("vk-a")}))
        reply = stream.send(request_body(BODY))
        kind = reply.WhichOneof("response")
        return "admitted" if kind == "request_body" else str(reply.immediate_response.status.code)


def wait_for(predicate, timeout_s: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_sighup_applies_new_budget_and_rejects_bad_config(tmp_path: Path):
    """SIGHUP lifts a suspended budget; a broken config is refused and the old one kept."""
    document = cases.document(tmp_path / "store.db")
    document["budgets"] = {"team": {"t1": [{"period": "month", "limit_usd": 0}]}}
    serve = ServeProcess(document, tmp_path, "serve").start()
    try:
        assert decision(serve.address) == "429"
        document["budgets"]["team"]["t1"][0]["limit_usd"] = 10
        serve.config_path.write_text(yaml.safe_dump(document))
        serve.process.send_signal(signal.SIGHUP)
        assert wait_for(lambda: decision(serve.address) == "admitted")
        serve.config_path.write_text("tiers: [this is not a mapping")
        serve.process.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "config reload rejected" in serve.log())
        assert decision(serve.address) == "admitted"
    finally:
        status = serve.terminate()
    assert status == 0
    assert "not valid YAML" in serve.log()


def test_file_change_is_picked_up(tmp_path: Path):
    """Editing the file without a signal takes effect within the polling interval."""
    document = cases.document(tmp_path / "store.db")
    document["budgets"] = {"team": {"t1": [{"period": "month", "limit_usd": 10}]}}
    serve = ServeProcess(document, tmp_path, "serve").start()
    try:
        assert decision(serve.address) == "admitted"
        document["budgets"]["team"]["t1"][0]["limit_usd"] = 0
        time.sleep(1.1)  # a new modification time, whose resolution may be one second
        serve.config_path.write_text(yaml.safe_dump(document))
        assert wait_for(lambda: decision(serve.address) == "429")
    finally:
        assert serve.terminate() == 0
