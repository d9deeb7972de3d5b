"""Configuration errors name the bad value's path and the fix."""

from pathlib import Path

import pytest

from lynkr_extproc.config import load_config, parse_config
from lynkr_extproc.errors import ConfigError
from tests.support import cases

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def document(tmp_path: Path) -> dict:
    return cases.document(tmp_path / "store.db")


def error_of(document: dict) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(document)
    return str(caught.value)


def test_example_config_loads():
    """The README's lynkr.yaml is valid."""
    config = load_config(ROOT / "lynkr.yaml")
    assert list(config.tiers) == ["SIMPLE", "MEDIUM", "COMPLEX", "REASONING"]


def test_unknown_upstream_in_tier(document):
    """A tier naming an undefined upstream lists the defined ones."""
    document["tiers"]["SIMPLE"]["upstream"] = "lokal"
    message = error_of(document)
    assert message.startswith("config tiers.SIMPLE.upstream:")
    assert "openai, anthropic" in message


def test_negative_budget_limit(document):
    """A negative limit is rejected with its path."""
    document["budgets"] = {"team": {"t1": [{"period": "month", "limit_usd": -5}]}}
    assert error_of(document) == "config budgets.team.t1[0].limit_usd: is -5, expected a value >= 0 (0 suspends)"


def test_unknown_period(document):
    """Periods are day, week, month or total."""
    document["budgets"] = {"team": {"t1": [{"period": "fortnight", "limit_usd": 1}]}}
    assert "budgets.team.t1[0].period: expected one of day, week, month, total" in error_of(document)


def test_misspelled_setting(document):
    """An unknown key is named, with the settings allowed there."""
    document["server"]["stroe"] = "sqlite:///x"
    message = error_of(document)
    assert message.startswith("config server.stroe: unknown setting")
    assert "store" in message


def test_negative_price_c15(document):
    """C15 (d): a negative price fails validation at load time."""
    document["pricing"]["models"]["gpt-4o-mini"] = {"input": -1000000, "output": 1}
    assert "pricing.models.gpt-4o-mini.input: is -1000000" in error_of(document)


def test_key_hash_must_be_sha256(document):
    """Keys are registered by SHA-256 hex digest only."""
    document["keys"][0]["sha256"] = "sk-plain-secret"
    assert "keys[0].sha256: expected 64 hex digits" in error_of(document)


def test_unset_credential_variable_starts_with_503_for_that_tier(document, monkeypatch):
    """An unset api_key_env does not stop the start; its tier answers 503 naming it."""
    monkeypatch.delenv("LYNKR_TEST_UNSET_KEY", raising=False)
    del document["upstreams"]["openai"]["api_key"]
    document["upstreams"]["openai"]["api_key_env"] = "LYNKR_TEST_UNSET_KEY"
    config = parse_config(document)
    assert config.upstreams["openai"].credential == ""


def test_bands_must_reach_100(document):
    """Score bands must cover the whole 0-100 range."""
    document["routing"]["bands"] = {"SIMPLE": 19, "MEDIUM": 50}
    assert "routing.bands: the highest band must reach 100" in error_of(document)


def test_bad_yaml_file(tmp_path: Path):
    """Invalid YAML names the file."""
    path = tmp_path / "bad.yaml"
    path.write_text("server: [unclosed")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(path) in str(caught.value)
    assert "not valid YAML" in str(caught.value)


def test_store_url_reads_password_from_environment(document, monkeypatch):
    """${NAME} in a store URL is replaced by the variable, percent-encoded."""
    monkeypatch.setenv("LYNKR_TEST_PG_PASSWORD", "p@ss:word")
    document["server"]["store"] = "redis://127.0.0.1:6379/0"
    document["server"]["ledger"] = "postgresql://lynkr:${LYNKR_TEST_PG_PASSWORD}@db:5432/lynkr"
    config = parse_config(document)
    assert config.ledger_url == "postgresql://lynkr:p%40ss%3Aword@db:5432/lynkr"


def test_store_url_with_unset_variable(document, monkeypatch):
    """An unset ${NAME} stops the start and names the variable."""
    monkeypatch.delenv("LYNKR_TEST_UNSET", raising=False)
    document["server"]["store"] = "redis://:${LYNKR_TEST_UNSET}@127.0.0.1:6379/0"
    assert error_of(document) == "config server.store: environment variable LYNKR_TEST_UNSET is not set"


@pytest.mark.parametrize("provider", ["bedrock", "bedrock_converse"])
def test_sigv4_allowed_for_bedrock_providers(document, provider):
    """Both Bedrock providers accept auth sigv4 with a region."""
    document["upstreams"]["aws"] = {
        "provider": provider,
        "url": "https://bedrock-runtime.us-east-1.amazonaws.com",
        "auth": "sigv4",
        "region": "us-east-1",
    }
    upstream = parse_config(document).upstreams["aws"]
    assert upstream.auth == "sigv4"
    assert upstream.region == "us-east-1"


def test_sigv4_rejected_for_other_providers(document):
    """auth sigv4 on a provider other than Bedrock names the allowed ones."""
    document["upstreams"]["openai"]["auth"] = "sigv4"
    document["upstreams"]["openai"]["region"] = "us-east-1"
    assert error_of(document) == (
        "config upstreams.openai.auth: sigv4 signing is for providers bedrock and "
        "bedrock_converse, not openai; use key"
    )


def test_unknown_event_loop(document):
    """server.event_loop is uvloop or asyncio."""
    document["server"]["event_loop"] = "trio"
    assert error_of(document) == "config server.event_loop: expected one of uvloop, asyncio, got 'trio'"
