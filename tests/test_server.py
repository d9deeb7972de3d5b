"""The gRPC server's health checking and reflection services."""

from pathlib import Path

import grpc
import pytest

from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.support import cases
from tests.support.grpc_client import ExtProcStream, immediate_json, request_headers
from tests.support.harness import Harness
from tests.support.processes import ServeProcess


def test_health_serving_then_not_serving(tmp_path: Path):
    """Health reports SERVING while up and NOT_SERVING once shutdown starts."""
    with Harness(cases.document(tmp_path / "store.db")) as harness:
        stub = health_pb2_grpc.HealthStub(harness.channel)
        for name in ("", "envoy.service.ext_proc.v3.ExternalProcessor"):
            reply = stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        service = harness.service.service
        assert service is not None
        harness.service.run(service.health.set("", health_pb2.HealthCheckResponse.NOT_SERVING))
        reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING


def test_reflection_lists_services(tmp_path: Path):
    """grpcurl-style reflection lists the ext_proc and health services."""
    with Harness(cases.document(tmp_path / "store.db")) as harness:
        stub = reflection_pb2_grpc.ServerReflectionStub(harness.channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        reply = next(iter(stub.ServerReflectionInfo(iter([request]), timeout=5)))
    names = {service.name for service in reply.list_services_response.service}
    assert "envoy.service.ext_proc.v3.ExternalProcessor" in names
    assert "grpc.health.v1.Health" in names


def test_metrics_move_with_traffic(tmp_path: Path):
    """/metrics counts admissions, rejections, spend, tokens and phase latency."""
    import json as jsonlib
    import urllib.request

    from tests.support.grpc_client import request_body, request_headers, response_body, response_headers
    from tests.support.ports import free_port

    document = cases.document(tmp_path / "store.db")
    port = free_port()
    document["server"]["metrics_listen"] = f"127.0.0.1:{port}"
    document["budgets"] = {"team": {"t1": [{"period": "month", "limit_usd": 10}]}}
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    usage = {"usage": {"prompt_tokens": 1000, "completion_tokens": 10}}
    with Harness(document) as harness:
        stream = harness.stream()
        stream.send(request_headers("/v1/chat/completions", {"x-api-key": cases.secret("vk-a")}))
        stream.send(request_body(body))
        stream.send(response_headers())
        stream.send(response_body(jsonlib.dumps(usage).encode(), end_of_stream=True))
        stream.close()
        harness.stream().send(request_headers("/v1/chat/completions", {"x-api-key": "wrong"}))
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
            text = reply.read().decode()
    assert 'lynkr_requests_total{decision="admitted",tier="SIMPLE"} 1.0' in text
    assert 'lynkr_requests_total{decision="unauthenticated",tier="-"} 1.0' in text
    assert 'lynkr_spend_usd_total{level="team",tier="SIMPLE"} 0.000156' in text
    assert 'lynkr_holds_in_flight 0.0' in text
    assert 'lynkr_usage_records_total{outcome="completed",usage_source="reported"} 1.0' in text
    assert 'gen_ai_client_token_usage_count{gen_ai_provider_name="openai",gen_ai_request_model="gpt-4o-mini",gen_ai_token_type="input"} 1.0' in text
    assert 'lynkr_phase_seconds_count{phase="request_body"} 1.0' in text
    assert 'lynkr_store_seconds_count{operation="reserve"} 1.0' in text


def test_json_log_lines():
    """With log_format json every line is one JSON object with the message."""
    import io
    import json as jsonlib
    import logging

    from lynkr_extproc.logs import JsonFormatter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("lynkr_extproc.test_json")
    log.addHandler(handler)
    log.propagate = False
    log.warning("request %s rejected", "r-1")
    line = jsonlib.loads(stream.getvalue())
    assert line["message"] == "request r-1 rejected"
    assert line["level"] == "WARNING"
    assert line["logger"] == "lynkr_extproc.test_json"


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_serve_event_loop_choice(tmp_path: Path, loop: str):
    """`serve` runs on the configured loop and replies to ext_proc streams on it."""
    document = cases.document(tmp_path / "store.db")
    document["server"]["event_loop"] = loop
    process = ServeProcess(document, tmp_path, f"serve-{loop}").start()
    try:
        with grpc.insecure_channel(process.address) as channel:
            reply = ExtProcStream(channel).send(
                request_headers("/v1/chat/completions", {"x-api-key": "sk-not-a-key"})
            )
    finally:
        status = process.terminate()
    assert immediate_json(reply)[0] == 401
    assert f"(event loop {loop})" in process.log()
    assert status == 0
