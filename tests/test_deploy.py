"""The deployment files agree with the code: compose, generated Envoy configs."""

from pathlib import Path

import subprocess

import pytest
import yaml

from lynkr_extproc import envoy_config
from lynkr_extproc.cli import find_envoy
from lynkr_extproc.config import load_config

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("config", "generated"),
    [("lynkr.yaml", "envoy/envoy.yaml"), ("deploy/compose/lynkr.yaml", "deploy/compose/envoy.yaml")],
)
def test_checked_in_envoy_config_is_current(config, generated):
    """The checked-in bootstraps are what envoy-config writes for their configs."""
    expected = envoy_config.bootstrap(load_config(ROOT / config))
    assert yaml.safe_load((ROOT / generated).read_text()) == expected


@pytest.mark.parametrize("generated", ["envoy/envoy.yaml", "deploy/compose/envoy.yaml"])
def test_checked_in_envoy_config_validates(generated):
    """Envoy itself accepts the checked-in bootstraps."""
    result = subprocess.run(
        [find_envoy(), "--mode", "validate", "-c", str(ROOT / generated)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_mounts_files_that_exist():
    """Every file docker-compose.yml mounts from the repository exists."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    mounts = [
        volume.split(":")[0]
        for service in compose["services"].values()
        for volume in service.get("volumes", [])
        if volume.startswith("./")
    ]
    assert mounts
    for mount in mounts:
        assert (ROOT / mount).exists(), mount


def test_compose_envoy_reaches_the_lynkr_service():
    """Envoy's ext_proc cluster resolves the lynkr service name to every replica."""
    config = load_config(ROOT / "deploy/compose/lynkr.yaml")
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    cluster = envoy_config.bootstrap(config)["static_resources"]["clusters"][0]
    assert config.envoy.ext_proc_addresses == ("lynkr:50051",)
    assert cluster["type"] == "STRICT_DNS"
    assert compose["services"]["lynkr"]["deploy"]["replicas"] == 2


def test_compose_services_match_the_store_urls():
    """The compose config uses the redis and postgres services it starts."""
    config = load_config(ROOT / "deploy/compose/lynkr.yaml")
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert config.store_url.startswith("redis://redis:")
    assert config.ledger_url.startswith("postgresql://lynkr:lynkr@postgres:")
    assert {"redis", "postgres", "envoy", "llama"} <= set(compose["services"])


@pytest.mark.parametrize("provider", ["bedrock", "bedrock_converse"])
def test_bedrock_sigv4_bootstrap_validates(tmp_path, provider):
    """A Bedrock upstream with sigv4 gets Envoy's signing filter, and Envoy accepts it."""
    from lynkr_extproc.config import parse_config

    document = yaml.safe_load((ROOT / "lynkr.yaml").read_text())
    document["upstreams"]["bedrock"] = {
        "provider": provider,
        "url": "https://bedrock-runtime.us-east-1.amazonaws.com",
        "auth": "sigv4",
        "region": "us-east-1",
    }
    document["tiers"]["COMPLEX"] = {"upstream": "bedrock", "model": "anthropic.claude-sonnet-4-5-20250929-v1:0"}
    document["tiers"]["MEDIUM"]["fallback"] = [{"upstream": "local", "model": "gemma-3-270m"}]
    bootstrap = envoy_config.bootstrap(parse_config(document, base_dir=ROOT))
    clusters = {c["name"]: c for c in bootstrap["static_resources"]["clusters"]}
    options = clusters["upstream_bedrock"]["typed_extension_protocol_options"]
    filters = options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]["http_filters"]
    assert filters[0]["name"] == "envoy.filters.http.aws_request_signing"
    assert filters[0]["typed_config"]["region"] == "us-east-1"
    assert "tier_MEDIUM" in clusters
    path = tmp_path / "envoy.yaml"
    path.write_text(yaml.safe_dump(bootstrap))
    result = subprocess.run([find_envoy(), "--mode", "validate", "-c", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
