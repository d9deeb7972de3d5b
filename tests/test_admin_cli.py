"""`lynkr-extproc keys | budgets | spend report` against running serve processes.

The last test is the operator's whole story through a real Envoy and two
replicas: create a key, set team and org budgets, send traffic, read the
spend report, tighten a budget and revoke the key, without any restart.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import grpc
import pytest

from lynkr_extproc import envoy_config
from lynkr_extproc.config import parse_config
from tests.support import cases
from tests.support.backends import backend_settings
from tests.support.envoy import Envoy
from tests.support.grpc_client import ExtProcStream, request_headers
from tests.support.ports import free_port
from tests.support.processes import CLI, ServeProcess
from tests.support.upstream import ReplayUpstream, Reply
from tests.test_admin import TOKEN, TOKEN_ENV, admin_document, send, until

PER_REQUEST = 75_000
"""Nano-dollars of 100 input and 100 output tokens of gpt-4o-mini ($0.15, $0.60 per M)."""


@pytest.fixture(autouse=True)
def admin_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)


def run_cli(
    config: Path, *args: str, token: str = TOKEN
) -> subprocess.CompletedProcess[str]:
    """Run one lynkr-extproc command with the admin token in its environment."""
    return subprocess.run(
        [CLI, *args, "--config", str(config)],
        env={**os.environ, TOKEN_ENV: token},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def cli_json(config: Path, *args: str) -> Any:
    result = run_cli(config, *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def cli_text(config: Path, *args: str) -> str:
    result = run_cli(config, *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def lines_with(text: str, *words: str) -> list[list[str]]:
    """Return the whitespace-split table lines containing every word."""
    return [
        line.split()
        for line in text.splitlines()
        if all(word in line.split() for word in words)
    ]


def test_cli_commands_print_tables_and_json(tmp_path: Path):
    """Each admin command works against a serve process, as a table and as JSON."""
    document = admin_document(tmp_path / "store.db", reference_model="gpt-4o")
    process = ServeProcess(document, tmp_path, "serve")
    config = process.config_path
    try:
        process.start()
        channel = grpc.insecure_channel(process.address)

        created = cli_json(
            config,
            "keys",
            "create",
            "--id",
            "vk-cli",
            "--team",
            "t1",
            "--org",
            "o1",
            "--customers",
            "c-1,c-2",
            "--tiers",
            "SIMPLE,MEDIUM",
        )
        created_text = cli_text(config, "keys", "create", "--team", "t9", "--org", "o1")
        admitted = send(channel, created["secret"])
        keys_table = cli_text(config, "keys", "list")
        keys_json = cli_json(config, "keys", "list")

        budget_table = cli_text(config, "budgets", "set", "team", "t1", "day", "0")
        suspended = send(channel, created["secret"])
        budgets_json = cli_json(
            config, "budgets", "list", "--level", "team", "--id", "t1"
        )
        deleted_text = cli_text(config, "budgets", "delete", "team", "t1", "day")
        restored = send(channel, created["secret"], model="gpt-4o")

        report_table = cli_text(config, "spend", "report", "--by", "tier,model")
        report_json = cli_json(config, "spend", "report", "--by", "key", "--team", "t1")
        plain_json = cli_json(
            config, "spend", "report", "--reference-model", "gpt-4o-mini"
        )

        rotated = cli_json(config, "keys", "rotate", "vk-cli")
        after_rotation = (
            send(channel, created["secret"]),
            send(channel, rotated["secret"]),
        )
        revoked_text = cli_text(config, "keys", "revoke", "vk-cli")
        after_revocation = send(channel, rotated["secret"])

        wrong_token = run_cli(config, "keys", "list", token="wrong-token-0123456789")
        bad_limit = run_cli(config, "budgets", "set", "org", "o1", "month", "1e3")
        bad_level = run_cli(config, "budgets", "set", "galaxy", "o1", "month", "1")
        channel.close()
    finally:
        exit_status = process.terminate()
    log = process.log()

    assert exit_status == 0
    assert created["key"]["id"] == "vk-cli"
    assert created["key"]["customers"] == ["c-1", "c-2"]
    assert created["key"]["tiers"] == ["MEDIUM", "SIMPLE"]
    assert created["secret"].startswith("sk-lynkr-")
    assert "secret: sk-lynkr-" in created_text
    assert (admitted, suspended, restored) == (200, 429, 200)

    assert lines_with(keys_table, "id", "team", "org", "source", "state")
    assert lines_with(keys_table, "vk-cli", "t1", "o1", "admin", "active")
    assert lines_with(keys_table, "vk-a", "t1", "o1", "config", "active")
    assert "sk-lynkr-" not in keys_table
    assert sorted(key["id"] for key in keys_json["keys"]) == sorted(
        ["vk-a", "vk-cli", created_text.split()[3]]
    )
    assert "sk-lynkr-" not in json.dumps(keys_json)

    assert lines_with(budget_table, "team", "t1", "day", "0.00", "admin", "daily")
    assert budgets_json["budgets"][0]["limit_usd"] == "0.00"
    assert budgets_json["budgets"][0]["source"] == "admin"
    assert (
        "deleted the admin daily budget of team t1; no daily budget applies to it now"
        in deleted_text
    )

    assert lines_with(
        report_table, "tier", "model", "requests", "cost_usd", "at_gpt-4o_usd*"
    )
    assert lines_with(
        report_table, "SIMPLE", "gpt-4o-mini", "1", "1000", "10", "0.000156", "0.0026"
    )
    assert lines_with(
        report_table, "MEDIUM", "gpt-4o", "1", "1000", "10", "0.0026", "0.0026"
    )
    assert lines_with(report_table, "total", "2", "2000", "20", "0.002756", "0.0052")
    assert (
        "* counterfactual: what the same tokens would have cost at gpt-4o's prices"
        in report_table
    )
    assert report_json["group_by"] == ["virtual_key"]
    assert report_json["rows"][0]["group"] == {"virtual_key": "vk-cli"}
    assert report_json["total"]["cost_usd"] == "0.002756"
    assert report_json["total"]["counterfactual_cost_usd"] == "0.0052"
    assert report_json["reference_model"] == "gpt-4o"
    assert "counterfactual" in report_json
    assert [row["group"] for row in plain_json["rows"]] == [{}]
    assert plain_json["total"]["requests"] == 2
    assert plain_json["total"]["counterfactual_cost_usd"] == "0.000312"

    assert rotated["key"]["id"] == "vk-cli"
    assert after_rotation == (401, 200)
    assert "revoked virtual key vk-cli; its secret now gets 401" in revoked_text
    assert after_revocation == 401

    assert wrong_token.returncode == 1
    assert "UNAUTHENTICATED" in wrong_token.stderr
    assert bad_limit.returncode == 1
    assert (
        "INVALID_ARGUMENT: limit_usd '1e3' is not a decimal number of USD"
        in bad_limit.stderr
    )
    assert bad_level.returncode == 2
    assert "'galaxy' is not a level" in bad_level.stderr
    for secret in (created["secret"], rotated["secret"], TOKEN):
        assert secret not in log


def test_cli_without_admin_section_explains(tmp_path: Path):
    """Admin commands on a config without `admin:` name the settings to add."""
    config = tmp_path / "lynkr.yaml"
    config.write_text(json.dumps(cases.document(tmp_path / "store.db")))
    result = run_cli(config, "keys", "list")
    assert result.returncode == 2
    assert (
        "lynkr.yaml has no admin: section; add admin.listen and admin.token_env"
        in result.stderr
    )


# -- the operator's story, end to end ---------------------------------------------


def post(port: int, secret: str) -> tuple[int, dict[str, Any]]:
    """Send one chat request through Envoy; return the status and JSON body."""
    body = {
        "model": "gpt-4o-mini",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "x" * 400}],
    }
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(
            "POST",
            "/v1/chat/completions",
            body=json.dumps(body),
            headers={
                "content-type": "application/json",
                "authorization": f"Bearer {secret}",
            },
        )
        reply = connection.getresponse()
        return reply.status, json.loads(reply.read() or b"{}")
    finally:
        connection.close()


def authenticated(address: str, secret: str) -> bool:
    """Return whether one replica accepts the key, by a bodiless GET that records no spend."""
    with grpc.insecure_channel(address) as channel:
        stream = ExtProcStream(channel)
        reply = stream.send(
            request_headers(
                "/v1/models",
                {"authorization": f"Bearer {secret}"},
                method="GET",
                end_of_stream=True,
            )
        )
        stream.cancel()
    return not reply.HasField("immediate_response")


@pytest.fixture(params=["sqlite", "redis+postgresql"])
def shared_backend(request: pytest.FixtureRequest, tmp_path: Path):
    yield from backend_settings(request.param, tmp_path)


@pytest.mark.e2e
def test_operator_story_without_restart(shared_backend, tmp_path: Path):
    """Key, budgets, traffic through Envoy to two replicas, report, 429 and 401: no restart."""
    upstream = ReplayUpstream(
        Reply.json(
            {"choices": [], "usage": {"prompt_tokens": 100, "completion_tokens": 100}}
        )
    )
    with upstream:
        document = admin_document(shared_backend, poll_interval_s=0.2)
        document["upstreams"]["openai"]["url"] = upstream.url

        replicas = []
        for index in range(2):
            replica = dict(
                document,
                server=dict(document["server"], listen=f"127.0.0.1:{free_port()}"),
                admin=dict(document["admin"], listen=f"127.0.0.1:{free_port()}"),
            )
            replicas.append(ServeProcess(replica, tmp_path, f"replica-{index}"))
        document["envoy"]["ext_proc_address"] = [
            replica.address for replica in replicas
        ]
        config = replicas[0].config_path
        port = parse_config(document).envoy.listen_port

        try:
            for replica in replicas:
                replica.start()
            with Envoy(envoy_config.bootstrap(parse_config(document))):
                story = _operator_story(
                    config, port, [replica.address for replica in replicas]
                )
        finally:
            exits = [replica.terminate() for replica in replicas]
    print(
        f"operator story: {story['admitted']} admitted, report {story['report']['total']}"
    )

    assert exits == [0, 0]
    assert story["admitted"] == 6
    assert story["report"]["total"]["requests"] == 6
    assert story["report"]["total"]["cost_usd"] == "0.00045"
    assert story["report"]["rows"] == [
        {
            "group": {"team": "acme", "tier": "SIMPLE"},
            "requests": 6,
            "tokens": {
                "input": 600,
                "output": 600,
                "cache_read": 0,
                "cache_write": 0,
                "reasoning": 0,
            },
            "cost_usd": "0.00045",
        },
    ]

    assert story["team_limited"][0] == 429
    assert story["team_limited"][1]["error"]["level"] == "team"
    assert story["team_limited"][1]["error"]["limit_usd"] == "0.00045"
    assert story["org_limited"][0] == 429
    assert story["org_limited"][1]["error"]["level"] == "org"
    assert story["revoked"][0] == 401


def _operator_story(config: Path, port: int, replicas: list[str]) -> dict[str, Any]:
    """Run the operator's steps with the CLI against replica 0; traffic goes through Envoy."""
    created = cli_json(config, "keys", "create", "--team", "acme", "--org", "bigco")
    secret = created["secret"]
    assert (
        until(lambda: all(authenticated(address, secret) for address in replicas), 5)
        is not None
    )
    cli_json(config, "budgets", "set", "team", "acme", "month", "1")
    cli_json(config, "budgets", "set", "org", "bigco", "month", "5")

    statuses = [post(port, secret)[0] for _ in range(6)]
    admitted = statuses.count(200)

    def report() -> dict[str, Any]:
        return cli_json(
            config, "spend", "report", "--by", "team,tier", "--org", "bigco"
        )

    # Each replica delivers its own queued records; wait for the other replica's.
    until(lambda: report()["total"]["requests"] == admitted, 10)
    spent = report()

    cli_json(
        config, "budgets", "set", "team", "acme", "month", spent["total"]["cost_usd"]
    )
    team_limited = _until_status(port, secret, 429)
    cli_json(config, "budgets", "delete", "team", "acme", "month")
    cli_json(config, "budgets", "set", "org", "bigco", "month", "0")
    org_limited = _until_status(port, secret, 429, level="org")
    cli_json(config, "keys", "revoke", created["key"]["id"])
    revoked = _until_status(port, secret, 401)
    return {
        "admitted": admitted,
        "report": spent,
        "team_limited": team_limited,
        "org_limited": org_limited,
        "revoked": revoked,
    }


def _until_status(
    port: int, secret: str, status: int, *, level: str | None = None
) -> tuple[int, dict[str, Any]]:
    """Send through Envoy until two replies in a row match; return the last.

    Two, because Envoy spreads requests over both replicas and one of them
    may not have read the change yet.
    """
    replies: list[tuple[int, dict[str, Any]]] = []

    def matches() -> bool:
        replies.append(post(port, secret))
        last = replies[-2:]
        return len(last) == 2 and all(
            code == status and (level is None or body["error"]["level"] == level)
            for code, body in last
        )

    until(matches, 5)
    return replies[-1]
