"""The gRPC server's health checking and reflection services."""

from pathlib import Path

from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.support import cases
from tests.support.harness import Harness


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
