"""The Istio and Envoy Gateway examples agree with their CRDs, Envoy and the code.

deploy/istio/envoyfilter.yaml and deploy/envoy-gateway/extension-policy.yaml
are checked without a cluster:

- against the CRD schemas in tests/fixtures/schemas/, turned into JSON
  Schema with unknown fields rejected (as `kubectl apply --validate=strict`
  does), plus the CRDs' CEL rules (`x-kubernetes-validations`), evaluated
  with cel-python after the schema defaults are applied;
- the EnvoyFilter's patches, by parsing them into Envoy's own protobuf
  messages, which reject unknown and mistyped fields;
- both against the ext_proc filter that envoy_config.bootstrap() writes for
  lynkr.yaml, so that the examples change when the generated config does.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import celpy
import jsonschema
import pytest
import yaml
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.http.ext_proc.v3 import ext_proc_pb2, processing_mode_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from google.protobuf import duration_pb2, json_format

from lynkr_extproc import envoy_config
from lynkr_extproc.config import Config, load_config

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = ROOT / "tests" / "fixtures" / "schemas"
ENVOY_FILTER = ROOT / "deploy" / "istio" / "envoyfilter.yaml"
GATEWAY_POLICIES = ROOT / "deploy" / "envoy-gateway" / "extension-policy.yaml"
SERVICE_MANIFEST = ROOT / "deploy" / "kubernetes" / "deployment" / "lynkr-extproc.yaml"

CRDS = {
    (
        "networking.istio.io/v1alpha3",
        "EnvoyFilter",
    ): "istio/envoyfilters.networking.istio.io.yaml",
    (
        "gateway.envoyproxy.io/v1alpha1",
        "EnvoyExtensionPolicy",
    ): "envoy-gateway/envoyextensionpolicies.gateway.envoyproxy.io.yaml",
    (
        "gateway.envoyproxy.io/v1alpha1",
        "ClientTrafficPolicy",
    ): "envoy-gateway/clienttrafficpolicies.gateway.envoyproxy.io.yaml",
    (
        "gateway.envoyproxy.io/v1alpha1",
        "BackendTrafficPolicy",
    ): "envoy-gateway/backendtrafficpolicies.gateway.envoyproxy.io.yaml",
}
"""The CRD file of each (apiVersion, kind) the examples use."""

EXT_PROC_FILTER = "envoy.filters.http.ext_proc"
ISTIO_CLUSTER = re.compile(
    r"outbound\|(?P<port>\d+)\|\|"
    r"(?P<service>[a-z0-9-]+)\.(?P<namespace>[a-z0-9-]+)\.svc\.cluster\.local"
)
DNS_SUBDOMAIN = re.compile(
    r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
)
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


# -- schemas -----------------------------------------------------------------


def _crd_schema(api_version: str, kind: str) -> dict[str, Any]:
    """Return the openAPIV3Schema of the CRD version that serves api_version."""
    crd = yaml.safe_load((SCHEMAS / CRDS[(api_version, kind)]).read_text())
    group, _, version = api_version.partition("/")
    assert crd["spec"]["group"] == group
    assert crd["spec"]["names"]["kind"] == kind
    (served,) = [
        v for v in crd["spec"]["versions"] if v["name"] == version and v["served"]
    ]
    return served["schema"]["openAPIV3Schema"]


def _strict(schema: Any) -> Any:
    """Turn a structural OpenAPI schema into a JSON Schema that rejects unknown fields.

    An object schema with `properties` and neither `additionalProperties`
    nor `x-kubernetes-preserve-unknown-fields` gets
    `additionalProperties: false`; `nullable` becomes a "null" type.
    """
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    strict = {key: _strict(value) for key, value in schema.items()}
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        strict["additionalProperties"] = False
    if schema.get("nullable") and "type" in schema:
        strict["type"] = [schema["type"], "null"]
    return strict


ROOT_FIELDS = {
    "apiVersion": {"type": "string"},
    "kind": {"type": "string"},
    "metadata": {"type": "object"},
}
"""Fields the API server accepts on every object, whether a CRD lists them or not."""


def _schema_errors(document: dict[str, Any]) -> list[str]:
    schema = copy.deepcopy(_crd_schema(document["apiVersion"], document["kind"]))
    schema["properties"] = {**ROOT_FIELDS, **schema["properties"]}
    schema = _strict(schema)
    validator = jsonschema.Draft7Validator(schema)
    return [
        f"{'/'.join(map(str, error.absolute_path)) or '(root)'}: {error.message}"
        for error in validator.iter_errors(document)
    ]


def _metadata_errors(document: dict[str, Any]) -> list[str]:
    """Check the ObjectMeta fields the examples set, which the CRD leaves open."""
    metadata = document.get("metadata", {})
    errors = []
    name = metadata.get("name", "")
    if len(name) > 253 or not DNS_SUBDOMAIN.fullmatch(name):
        errors.append(f"metadata.name {name!r} is not a DNS subdomain")
    namespace = metadata.get("namespace", "")
    if len(namespace) > 63 or not DNS_LABEL.fullmatch(namespace):
        errors.append(f"metadata.namespace {namespace!r} is not a DNS label")
    return errors


# -- CEL rules ---------------------------------------------------------------


def _with_defaults(schema: dict[str, Any], value: Any) -> Any:
    """Fill in the schema's defaults, as the API server does before CEL rules."""
    if isinstance(value, dict):
        result = dict(value)
        for name, child in schema.get("properties", {}).items():
            if name not in result and "default" in child:
                result[name] = copy.deepcopy(child["default"])
            if name in result:
                result[name] = _with_defaults(child, result[name])
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for name in set(result) - set(schema.get("properties", {})):
                result[name] = _with_defaults(extra, result[name])
        return result
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [_with_defaults(schema["items"], item) for item in value]
    return value


def _rules(
    schema: dict[str, Any], value: Any, path: str
) -> Iterator[tuple[str, dict[str, str], Any]]:
    """Yield (path, rule, value) for every CEL rule whose node is in the value."""
    for rule in schema.get("x-kubernetes-validations", []):
        yield path, rule, value
    if isinstance(value, dict):
        for name, child in schema.get("properties", {}).items():
            if name in value:
                yield from _rules(child, value[name], f"{path}.{name}")
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for name in set(value) - set(schema.get("properties", {})):
                yield from _rules(extra, value[name], f"{path}[{name!r}]")
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            yield from _rules(schema["items"], item, f"{path}[{index}]")


def _cel_errors(document: dict[str, Any]) -> list[str]:
    """Evaluate the CEL rules of the document's CRD and return the failures."""
    schema = _crd_schema(document["apiVersion"], document["kind"])
    environment = celpy.Environment()
    errors = []
    for path, rule, value in _rules(schema, _with_defaults(schema, document), "self"):
        if "oldSelf" in rule["rule"]:
            continue  # a transition rule: there is no previous object
        program = environment.program(environment.compile(rule["rule"]))
        try:
            result = program.evaluate({"self": celpy.json_to_cel(value)})
        except celpy.CELEvalError as exc:
            errors.append(f"{path}: {rule['rule']!r} could not be evaluated: {exc}")
            continue
        if result is not True and result != celpy.celtypes.BoolType(True):
            errors.append(f"{path}: {rule.get('message', rule['rule'])}")
    return errors


# -- documents ---------------------------------------------------------------


def _documents(path: Path) -> list[dict[str, Any]]:
    return [document for document in yaml.safe_load_all(path.read_text()) if document]


def _envoy_filter() -> dict[str, Any]:
    (document,) = _documents(ENVOY_FILTER)
    return document


def _gateway_policy(kind: str) -> dict[str, Any]:
    (document,) = [d for d in _documents(GATEWAY_POLICIES) if d["kind"] == kind]
    return document


def _patch(applied_to: str) -> dict[str, Any]:
    (patch,) = [
        p
        for p in _envoy_filter()["spec"]["configPatches"]
        if p["applyTo"] == applied_to
    ]
    return patch


def _lynkr_config() -> Config:
    return load_config(ROOT / "lynkr.yaml")


def _generated_ext_proc() -> ext_proc_pb2.ExternalProcessor:
    """Return the downstream ext_proc filter that envoy_config writes for lynkr.yaml."""
    bootstrap = envoy_config.bootstrap(_lynkr_config())
    (listener,) = bootstrap["static_resources"]["listeners"]
    manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
    (entry,) = [f for f in manager["http_filters"] if f["name"] == EXT_PROC_FILTER]
    return _parse_http_filter(entry)


def _parse_http_filter(entry: dict[str, Any]) -> ext_proc_pb2.ExternalProcessor:
    """Parse an HTTP filter with Envoy's protobufs, which reject unknown fields."""
    http_filter = json_format.ParseDict(entry, hcm_pb2.HttpFilter())
    processor = ext_proc_pb2.ExternalProcessor()
    assert http_filter.typed_config.Unpack(processor), http_filter.typed_config.type_url
    return processor


def _quantity_bytes(value: int | str) -> int:
    """Return the bytes of a Kubernetes quantity such as 64Mi or 1G."""
    if isinstance(value, int):
        return value
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 10**3, "M": 10**6, "G": 10**9}
    number, unit = re.fullmatch(r"(\d+)([A-Za-z]*)", value).groups()
    return int(number) * units.get(unit, 1)


def _seconds(duration: str) -> float:
    """Return the seconds of a Gateway API duration such as 2s or 1m30s."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)(ms|h|m|s)", duration))


def _service_port(name: str) -> int:
    (service,) = [
        d
        for d in _documents(SERVICE_MANIFEST)
        if d["kind"] == "Service" and d["metadata"]["name"] == name
    ]
    (port,) = service["spec"]["ports"]
    return port["port"]


# -- Istio -------------------------------------------------------------------


def test_envoyfilter_matches_crd_schema():
    """The EnvoyFilter validates against Istio's CRD schema, unknown fields rejected."""
    document = _envoy_filter()
    assert _schema_errors(document) == []
    assert _metadata_errors(document) == []


def test_envoyfilter_cel_rules_pass():
    """Every CEL rule of the EnvoyFilter CRD is true for the example."""
    assert _cel_errors(_envoy_filter()) == []


def test_envoyfilter_inserts_before_router():
    """The ext_proc filter goes before the router of the gateway's HTTP manager."""
    patch = _patch("HTTP_FILTER")
    listener = patch["match"]["listener"]["filterChain"]["filter"]
    assert patch["match"]["context"] == "GATEWAY"
    assert listener["name"] == "envoy.filters.network.http_connection_manager"
    assert listener["subFilter"]["name"] == "envoy.filters.http.router"
    assert patch["patch"]["operation"] == "INSERT_BEFORE"
    assert patch["patch"]["value"]["name"] == EXT_PROC_FILTER


def test_envoyfilter_ext_proc_matches_generated_filter():
    """The filter parses as Envoy's ExternalProcessor, equal to envoy_config's.

    Only the gRPC cluster name differs; the next test checks it.
    """
    example = _parse_http_filter(_patch("HTTP_FILTER")["patch"]["value"])
    generated = _generated_ext_proc()
    example.grpc_service.envoy_grpc.ClearField("cluster_name")
    generated.grpc_service.envoy_grpc.ClearField("cluster_name")
    assert json_format.MessageToDict(example) == json_format.MessageToDict(generated)
    assert example == generated


def test_envoyfilter_cluster_names_service():
    """The gRPC cluster is Istio's name for port 50051 of the Service lynkr-extproc."""
    example = _parse_http_filter(_patch("HTTP_FILTER")["patch"]["value"])
    match = ISTIO_CLUSTER.fullmatch(example.grpc_service.envoy_grpc.cluster_name)
    assert match, example.grpc_service.envoy_grpc.cluster_name
    assert match["service"] == "lynkr-extproc"
    assert int(match["port"]) == _service_port("lynkr-extproc")


@pytest.mark.parametrize(
    ("applied_to", "message"),
    [("LISTENER", listener_pb2.Listener), ("CLUSTER", cluster_pb2.Cluster)],
    ids=["listener", "cluster"],
)
def test_envoyfilter_buffer_limit_patch(applied_to, message):
    """The buffer limit patches parse as Envoy config with envoy.buffer_limit_bytes."""
    patch = _patch(applied_to)
    parsed = json_format.ParseDict(patch["patch"]["value"], message())
    assert patch["match"]["context"] == "GATEWAY"
    assert patch["patch"]["operation"] == "MERGE"
    assert (
        parsed.per_connection_buffer_limit_bytes.value
        == _lynkr_config().envoy.buffer_limit_bytes
    )


def _set(document: dict[str, Any], path: tuple, value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(document)
    node = changed
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return changed


ENVOY_FILTER_BREAKAGES = [
    pytest.param(
        ("spec", "configPatches", 0, "applyTo"), "HTTP_FILTERS", "schema", id="bad-enum"
    ),
    pytest.param(
        ("spec", "configPatches", 0, "patch", "operaton"),
        "MERGE",
        "schema",
        id="unknown-field",
    ),
    pytest.param(("spec", "priority"), "high", "schema", id="wrong-type"),
    pytest.param(
        ("spec", "targetRefs"),
        [{"kind": "Gateway", "name": "g"}],
        "cel",
        id="selector-and-targetRefs",
    ),
]


@pytest.mark.parametrize(("path", "value", "check"), ENVOY_FILTER_BREAKAGES)
def test_envoyfilter_breakage_detected(path, value, check):
    """A broken copy of the EnvoyFilter fails the schema or CEL check."""
    broken = _set(_envoy_filter(), path, value)
    errors = _schema_errors(broken) if check == "schema" else _cel_errors(broken)
    assert errors


def test_envoyfilter_typo_rejected_by_envoy_protos():
    """A misspelt ext_proc field fails to parse, which the CRD alone would accept."""
    value = copy.deepcopy(_patch("HTTP_FILTER")["patch"]["value"])
    value["typed_config"]["failure_mode_alow"] = False
    with pytest.raises(json_format.ParseError):
        _parse_http_filter(value)


# -- Envoy Gateway -----------------------------------------------------------

GATEWAY_KINDS = ["EnvoyExtensionPolicy", "ClientTrafficPolicy", "BackendTrafficPolicy"]


def test_gateway_policies_are_the_expected_kinds():
    """The file contains one policy of each kind, all attached to one Gateway."""
    documents = _documents(GATEWAY_POLICIES)
    assert sorted(d["kind"] for d in documents) == sorted(GATEWAY_KINDS)
    targets = {str(d["spec"]["targetRefs"]) for d in documents}
    assert len(targets) == 1


@pytest.mark.parametrize("kind", GATEWAY_KINDS)
def test_gateway_policy_matches_crd_schema(kind):
    """Each policy validates against Envoy Gateway's CRD schema, strictly."""
    document = _gateway_policy(kind)
    assert _schema_errors(document) == []
    assert _metadata_errors(document) == []


@pytest.mark.parametrize("kind", GATEWAY_KINDS)
def test_gateway_policy_cel_rules_pass(kind):
    """Every CEL rule of each policy's CRD is true once the defaults are applied."""
    assert _cel_errors(_gateway_policy(kind)) == []


def test_extension_policy_matches_generated_filter():
    """The extProc settings are those of the ext_proc filter envoy_config writes."""
    generated = _generated_ext_proc()
    (ext_proc,) = _gateway_policy("EnvoyExtensionPolicy")["spec"]["extProc"]
    mode = ext_proc["processingMode"]
    timeout = duration_pb2.Duration()
    timeout.FromNanoseconds(int(_seconds(ext_proc["messageTimeout"]) * 1e9))
    buffered = processing_mode_pb2.ProcessingMode.BUFFERED
    assert ext_proc["failOpen"] is generated.failure_mode_allow
    assert timeout == generated.message_timeout
    assert ext_proc["statusOnError"] == generated.status_on_error.code
    assert mode["allowModeOverride"] is generated.allow_mode_override
    assert mode["request"]["body"] == "Buffered"
    assert generated.processing_mode.request_body_mode == buffered
    assert mode["response"]["body"] == "Buffered"
    assert generated.processing_mode.response_body_mode == buffered


def test_extension_policy_backend_service():
    """The backend is the Service lynkr-extproc, with the generated circuit breakers."""
    (ext_proc,) = _gateway_policy("EnvoyExtensionPolicy")["spec"]["extProc"]
    (backend,) = ext_proc["backendRefs"]
    (thresholds,) = envoy_config.CIRCUIT_BREAKERS["thresholds"]
    breaker = ext_proc["backendSettings"]["circuitBreaker"]
    assert backend["name"] == "lynkr-extproc"
    assert backend["port"] == _service_port("lynkr-extproc")
    assert breaker["maxConnections"] == thresholds["max_connections"]
    assert breaker["maxPendingRequests"] == thresholds["max_pending_requests"]
    assert breaker["maxParallelRequests"] == thresholds["max_requests"]
    assert breaker["maxParallelRetries"] == thresholds["max_retries"]


@pytest.mark.parametrize("kind", ["ClientTrafficPolicy", "BackendTrafficPolicy"])
def test_traffic_policy_buffer_limit(kind):
    """The listener and upstream buffer limits are envoy.buffer_limit_bytes."""
    limit = _gateway_policy(kind)["spec"]["connection"]["bufferLimit"]
    assert _quantity_bytes(limit) == _lynkr_config().envoy.buffer_limit_bytes


def test_backend_traffic_policy_request_timeout():
    """The upstream request timeout is envoy.route_timeout_s."""
    timeout = _gateway_policy("BackendTrafficPolicy")["spec"]["timeout"]["http"][
        "requestTimeout"
    ]
    assert _seconds(timeout) == _lynkr_config().envoy.route_timeout_s


GATEWAY_BREAKAGES = [
    pytest.param(
        "EnvoyExtensionPolicy",
        ("spec", "extProc", 0, "processingMode", "request", "body"),
        "Bufferd",
        "schema",
        id="bad-body-mode",
    ),
    pytest.param(
        "EnvoyExtensionPolicy",
        ("spec", "extProc", 0, "statusOnError"),
        599,
        "schema",
        id="bad-status",
    ),
    pytest.param(
        "EnvoyExtensionPolicy",
        ("spec", "extProc", 0, "messageTimeout"),
        "2 seconds",
        "schema",
        id="bad-duration",
    ),
    pytest.param(
        "EnvoyExtensionPolicy",
        ("spec", "extProc", 0, "backendRefs", 0),
        {"name": "lynkr-extproc"},
        "cel",
        id="service-without-port",
    ),
    pytest.param(
        "EnvoyExtensionPolicy",
        ("spec", "targetRefs", 0, "group"),
        "networking.k8s.io",
        "cel",
        id="wrong-target-group",
    ),
    pytest.param(
        "ClientTrafficPolicy",
        ("spec", "targetRefs", 0, "kind"),
        "HTTPRoute",
        "cel",
        id="client-policy-on-route",
    ),
    pytest.param(
        "BackendTrafficPolicy",
        ("spec", "connection", "bufferLimit"),
        "64 MiB",
        "schema",
        id="bad-quantity",
    ),
]


@pytest.mark.parametrize(("kind", "path", "value", "check"), GATEWAY_BREAKAGES)
def test_gateway_breakage_detected(kind, path, value, check):
    """A broken copy of a policy fails the schema or CEL check."""
    broken = _set(_gateway_policy(kind), path, value)
    errors = _schema_errors(broken) if check == "schema" else _cel_errors(broken)
    assert errors
