"""The Kubernetes manifests in deploy/kubernetes/ agree with the schema and the code.

Each layout folder is a kustomization: plain manifests listed under
`resources`, and the ConfigMaps `lynkr-config` and `envoy-config` generated
from lynkr.yaml and envoy.yaml. kubernetes-validate checks the manifests
against the Kubernetes OpenAPI schemas bundled in its wheel, so no cluster
or network is needed. The ConfigMaps exist only after kustomize renders
the folder, which `kubectl kustomize` does when kubectl is installed.
"""

import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from lynkr_extproc import envoy_config
from lynkr_extproc.cli import find_envoy
from lynkr_extproc.config import Config, env_references, parse_config

ROOT = Path(__file__).resolve().parent.parent
KUBERNETES = ROOT / "deploy" / "kubernetes"
LAYOUTS = ["deployment", "sidecar"]
# The newest Kubernetes release whose schemas kubernetes-validate 1.37 bundles.
KUBERNETES_VERSION = "1.37.0"
EXT_PROC_ADDRESS = {"deployment": "lynkr-extproc:50051", "sidecar": "127.0.0.1:50051"}
LYNKR_CONTAINER = "lynkr-extproc"
ENVOY_CONTAINER = "envoy"


def _kustomization(layout: str) -> dict[str, Any]:
    return yaml.safe_load((KUBERNETES / layout / "kustomization.yaml").read_text())


def _documents(layout: str) -> list[dict[str, Any]]:
    """Load every document of the files listed under the layout's resources."""
    documents = []
    for name in _kustomization(layout)["resources"]:
        text = (KUBERNETES / layout / name).read_text()
        documents += [doc for doc in yaml.safe_load_all(text) if doc]
    return documents


def _find(layout: str, kind: str, name: str) -> dict[str, Any]:
    for document in _documents(layout):
        if document["kind"] == kind and document["metadata"]["name"] == name:
            return document
    raise LookupError(f"{layout}: no {kind} named {name!r}")


def _pod_specs(layout: str) -> list[dict[str, Any]]:
    return [
        document["spec"]["template"]["spec"]
        for document in _documents(layout)
        if document["kind"] == "Deployment"
    ]


def _containers(layout: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Return (pod spec, container) for every container of every Deployment."""
    return [(pod, c) for pod in _pod_specs(layout) for c in pod["containers"]]


def _container(layout: str, name: str) -> dict[str, Any]:
    matches = [c for _, c in _containers(layout) if c["name"] == name]
    assert len(matches) == 1, f"{layout}: {len(matches)} containers named {name!r}"
    return matches[0]


def _volume_mounted_at(
    layout: str, container: dict[str, Any], path: str
) -> dict[str, Any]:
    """Return the pod volume that the container mounts at path."""
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == path]
    for pod in _pod_specs(layout):
        if container in pod["containers"]:
            (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
            return volume
    raise LookupError(f"{layout}: container {container['name']!r} has no pod")


def _raw_lynkr_config(layout: str) -> dict[str, Any]:
    return yaml.safe_load((KUBERNETES / layout / "lynkr.yaml").read_text())


def _api_key_variables(layout: str) -> set[str]:
    """Return the variables the config reads: API keys and ${NAME} in store URLs."""
    raw = _raw_lynkr_config(layout)
    names = {entry["api_key_env"] for entry in raw["upstreams"].values() if "api_key_env" in entry}
    for setting in ("store", "ledger", "outbox"):
        names.update(env_references(raw["server"].get(setting, "")))
    return names


def _parse_lynkr_config(layout: str, monkeypatch: pytest.MonkeyPatch) -> Config:
    """Parse the layout's lynkr.yaml with placeholder provider keys set."""
    for variable in _api_key_variables(layout):
        monkeypatch.setenv(variable, f"test-{variable.lower()}")
    return parse_config(_raw_lynkr_config(layout))


def _schema_error(document: dict[str, Any]) -> str | None:
    """Validate strictly and return the first error with its path, or None."""
    try:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        path = ".".join(str(part) for part in error.path)
        return (
            f"{document['kind']}/{document['metadata']['name']} {path}: {error.message}"
        )
    return None


def _document_id(layout: str, document: dict[str, Any]) -> str:
    return f"{layout}-{document['kind']}-{document['metadata']['name']}"


MANIFESTS = [
    pytest.param(document, id=_document_id(layout, document))
    for layout in LAYOUTS
    for document in _documents(layout)
]


@pytest.mark.parametrize("document", MANIFESTS)
def test_manifest_matches_schema(document):
    """Every manifest is valid for Kubernetes 1.37; unknown fields are errors."""
    assert _schema_error(document) is None


@pytest.mark.parametrize("layout", LAYOUTS)
def test_kustomization_lists_every_file(layout):
    """kustomization.yaml names every manifest file, and every file it names exists."""
    kustomization = _kustomization(layout)
    generated = [
        name
        for generator in kustomization["configMapGenerator"]
        for name in generator["files"]
    ]
    on_disk = {path.name for path in (KUBERNETES / layout).glob("*.yaml")}
    assert (
        set(kustomization["resources"]) | set(generated) | {"kustomization.yaml"}
        == on_disk
    )
    assert sorted(generated) == ["envoy.yaml", "lynkr.yaml"]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
@pytest.mark.parametrize("layout", LAYOUTS)
def test_kustomize_output_matches_schema(layout):
    """What `kubectl kustomize` renders, ConfigMaps included, is valid and complete."""
    result = subprocess.run(
        ["kubectl", "kustomize", str(KUBERNETES / layout)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    rendered = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    config_maps = {
        doc["metadata"]["name"].rsplit("-", 1)[0]: doc["data"]
        for doc in rendered
        if doc["kind"] == "ConfigMap"
    }
    for document in rendered:
        assert _schema_error(document) is None
    lynkr_yaml = (KUBERNETES / layout / "lynkr.yaml").read_text()
    envoy_yaml = (KUBERNETES / layout / "envoy.yaml").read_text()
    assert config_maps["lynkr-config"] == {"lynkr.yaml": lynkr_yaml}
    assert config_maps["envoy-config"] == {"envoy.yaml": envoy_yaml}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_lynkr_listens_on_all_interfaces(layout, monkeypatch):
    """The config listens on all interfaces, because the kubelet probes the pod IP."""
    config = _parse_lynkr_config(layout, monkeypatch)
    assert config.listen == "0.0.0.0:50051"


@pytest.mark.parametrize("layout", LAYOUTS)
def test_lynkr_store_on_data_volume(layout, monkeypatch):
    """The SQLite store or outbox lies on the volume mounted for it, not the read-only root."""
    config = _parse_lynkr_config(layout, monkeypatch)
    container = _container(layout, LYNKR_CONTAINER)
    data_mounts = [
        mount["mountPath"]
        for mount in container["volumeMounts"]
        if not mount.get("readOnly", False)
    ]
    local = config.store_url if config.store_url.startswith("sqlite:") else config.outbox_url
    assert local.startswith("sqlite:////var/lib/lynkr/")
    assert "/var/lib/lynkr" in data_mounts


@pytest.mark.parametrize("layout", LAYOUTS)
def test_lynkr_reads_config_map(layout):
    """serve --config points at lynkr.yaml inside the mounted lynkr-config."""
    container = _container(layout, LYNKR_CONTAINER)
    config_path = Path(container["args"][container["args"].index("--config") + 1])
    volume = _volume_mounted_at(layout, container, str(config_path.parent))
    assert config_path.name == "lynkr.yaml"
    assert volume["configMap"]["name"] == "lynkr-config"


@pytest.mark.parametrize("layout", LAYOUTS)
def test_envoy_reads_bootstrap_config_map(layout):
    """envoy -c points at envoy.yaml inside the mounted envoy-config."""
    container = _container(layout, ENVOY_CONTAINER)
    bootstrap_path = Path(container["args"][container["args"].index("-c") + 1])
    volume = _volume_mounted_at(layout, container, str(bootstrap_path.parent))
    assert container["command"] == ["envoy"]
    assert bootstrap_path.name == "envoy.yaml"
    assert volume["configMap"]["name"] == "envoy-config"


@pytest.mark.parametrize("layout", LAYOUTS)
def test_envoy_bootstrap_is_current(layout, monkeypatch):
    """envoy.yaml is what envoy-config writes for the layout's lynkr.yaml."""
    config = _parse_lynkr_config(layout, monkeypatch)
    checked_in = yaml.safe_load((KUBERNETES / layout / "envoy.yaml").read_text())
    assert checked_in == envoy_config.bootstrap(config)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_envoy_validates_bootstrap(layout):
    """Envoy validates envoy.yaml with the container's own command-line flags."""
    arguments = list(_container(layout, ENVOY_CONTAINER)["args"])
    arguments[arguments.index("-c") + 1] = str(KUBERNETES / layout / "envoy.yaml")
    result = subprocess.run(
        [find_envoy(), "--mode", "validate", *arguments],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("layout", LAYOUTS)
def test_envoy_cluster_targets_ext_proc(layout):
    """Envoy's ext_proc cluster is the Service name, or loopback in the sidecar."""
    bootstrap = yaml.safe_load((KUBERNETES / layout / "envoy.yaml").read_text())
    (cluster,) = [
        cluster
        for cluster in bootstrap["static_resources"]["clusters"]
        if cluster["name"] == envoy_config.EXT_PROC_CLUSTER
    ]
    addresses = [
        endpoint["endpoint"]["address"]["socket_address"]
        for group in cluster["load_assignment"]["endpoints"]
        for endpoint in group["lb_endpoints"]
    ]
    host, _, port = EXT_PROC_ADDRESS[layout].rpartition(":")
    assert addresses == [{"address": host, "port_value": int(port)}]


def test_ext_proc_service_is_grpc():
    """The lynkr-extproc Service exposes the gRPC port the config listens on."""
    service = _find("deployment", "Service", "lynkr-extproc")
    (port,) = service["spec"]["ports"]
    assert port["port"] == 50051
    assert port["name"] == "grpc"
    assert port["appProtocol"] == "grpc"


def test_ext_proc_service_is_headless():
    """The Service is headless, so Envoy's STRICT_DNS cluster sees every pod."""
    service = _find("deployment", "Service", "lynkr-extproc")
    cluster = yaml.safe_load((KUBERNETES / "deployment" / "envoy.yaml").read_text())["static_resources"]["clusters"][0]
    assert service["spec"]["clusterIP"] == "None"
    assert cluster["type"] == "STRICT_DNS"


def test_ext_proc_runs_two_replicas():
    """The Deployment layout runs two lynkr-extproc replicas."""
    deployment = _find("deployment", "Deployment", "lynkr-extproc")
    assert deployment["spec"]["replicas"] == 2


def test_sidecar_pod_has_both_containers():
    """The sidecar layout runs both processes as containers of one pod."""
    (pod,) = _pod_specs("sidecar")
    names = sorted(container["name"] for container in pod["containers"])
    assert names == [ENVOY_CONTAINER, LYNKR_CONTAINER]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_services_match_pod_ports(layout):
    """Each Service selects a Deployment's pods and targets a named container port."""
    services = [doc for doc in _documents(layout) if doc["kind"] == "Service"]
    assert services
    for service in services:
        selector = service["spec"]["selector"].items()
        pods = [
            doc["spec"]["template"]
            for doc in _documents(layout)
            if doc["kind"] == "Deployment"
            and selector <= doc["spec"]["template"]["metadata"]["labels"].items()
        ]
        (pod,) = pods
        port_names = {
            port["name"]
            for container in pod["spec"]["containers"]
            for port in container.get("ports", [])
        }
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in port_names, service["metadata"]["name"]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_lynkr_probes_use_grpc(layout, monkeypatch):
    """Readiness and liveness use the kubelet's gRPC probe on the listen port."""
    config = _parse_lynkr_config(layout, monkeypatch)
    listen_port = int(config.listen.rpartition(":")[2])
    container = _container(layout, LYNKR_CONTAINER)
    for probe_name in ("readinessProbe", "livenessProbe"):
        probe = container[probe_name]
        assert probe["grpc"]["port"] == listen_port, probe_name
        assert not {"httpGet", "tcpSocket", "exec"} & probe.keys(), probe_name


@pytest.mark.parametrize("layout", LAYOUTS)
def test_secret_keys_match_api_key_env(layout):
    """The Secret contains exactly the variables that the config names."""
    secret = _find(layout, "Secret", "lynkr-provider-keys")
    assert set(secret["stringData"]) == _api_key_variables(layout)
    assert "data" not in secret


@pytest.mark.parametrize("layout", LAYOUTS)
def test_lynkr_env_reads_secret(layout):
    """Every variable the config reads comes from the Secret's key of the same name."""
    environment = {
        variable["name"]: variable
        for variable in _container(layout, LYNKR_CONTAINER)["env"]
    }
    for name in _api_key_variables(layout):
        reference = environment[name]["valueFrom"]["secretKeyRef"]
        assert reference["name"] == "lynkr-provider-keys", name
        assert reference["key"] == name


@pytest.mark.parametrize("layout", LAYOUTS)
def test_containers_run_as_non_root(layout):
    """Every container runs as a non-root user without privilege escalation."""
    for pod, container in _containers(layout):
        context = {**pod.get("securityContext", {}), **container["securityContext"]}
        name = container["name"]
        assert context["runAsNonRoot"] is True, name
        assert context["runAsUser"] > 0, name
        assert context["allowPrivilegeEscalation"] is False, name
        assert context["capabilities"]["drop"] == ["ALL"], name


@pytest.mark.parametrize("layout", LAYOUTS)
def test_containers_have_resource_limits(layout):
    """Every container requests and limits CPU and memory."""
    for _, container in _containers(layout):
        resources = container["resources"]
        name = container["name"]
        assert resources["requests"].keys() == {"cpu", "memory"}, name
        assert resources["limits"].keys() == {"cpu", "memory"}, name
