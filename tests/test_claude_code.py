"""The real Claude Code CLI through Envoy and lynkr-extproc, with no network.

The test runs `claude -p` with ANTHROPIC_BASE_URL set to Envoy's listener
and a virtual key as ANTHROPIC_API_KEY. An Anthropic-format replay upstream
replies with recorded streams, so one whole agent turn runs offline:

1. The conversation's first request, which offers the Bash tool, gets the
   docs' tool-use stream (fixtures/recorded/anthropic/message_stream_tool_use).
   Its tool call is changed from get_weather to Claude Code's Bash tool,
   with the input {"command": "echo lynkr-tool-ran > marker.txt"}. The
   recorded text before the call and the recorded usage stay as they are.
   Claude Code runs the command in its working directory.
2. The next request carries the tool_result and gets the docs' text stream
   (anthropic/message_stream) unchanged. Its text, "Hello!", becomes
   Claude Code's result.
3. Unless CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC is set, Claude Code also
   requests a session title, concurrently: a request with no tools and a
   JSON schema in output_config.format. It gets the same text stream with
   a JSON title in place of the text.

Claude Code 2.1.197 sends one more request, and no count_tokens request:
a `HEAD /` warm-up without credentials (user-agent Bun), which lynkr
rejects with 401 before it reaches the upstream. The upstream replies to any
other request with a 404 error, and the test then fails on the list of
request kinds or on Envoy's request counters.

Every process of the test runs in a network namespace whose only interface
is loopback: the test runs itself again under `unshare -n`, so the CLI can
reach 127.0.0.1 and nothing else. That needs root (or CAP_SYS_ADMIN),
unshare and ip, and the test skips without them.

The CLI is found through LYNKR_CLAUDE_BIN, else as `claude` on PATH.
tests/install_claude_code.sh installs the version this test was written
against.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from lynkr_extproc.gateway import Tenant
from tests.support.stack import Stack, base_config, key_hash
from tests.support.upstream import FIXTURES, Received, ReplayUpstream, Reply

pytestmark = [pytest.mark.e2e, pytest.mark.client]

CLAUDE_BIN_VARIABLE = "LYNKR_CLAUDE_BIN"
NAMESPACE_VARIABLE = "LYNKR_TEST_IN_LOOPBACK_NAMESPACE"
"""Set to 1 for the copy of the test that runs inside the namespace."""

VIRTUAL_KEY = "sk-lynkr-claude-code-test"
PROVIDER_KEY = "provider-secret-claude"  # the key base_config gives upstream "claude"
TIER_MODEL = "claude-sonnet-4-5"
CUSTOMER = "acme"
# Claude Code sends these on every API request (ANTHROPIC_CUSTOM_HEADERS).
# lynkr reads them for attribution and must not pass them upstream.
TENANT_HEADERS = {
    "lynkr-team-id": "t1",
    "lynkr-org-id": "o1",
    "lynkr-customer-id": CUSTOMER,
}

# Claude Code requests a session title for this prompt, but for none as
# short as "do it".
PROMPT = "Use Bash to write lynkr-tool-ran to marker.txt."
TOOL_INPUT = {"command": "echo lynkr-tool-ran > marker.txt"}
MARKER_TEXT = "lynkr-tool-ran\n"
FINAL_TEXT = "Hello!"  # the text deltas of anthropic/message_stream.body
TITLE = {"title": "Write a marker file"}

# claude-sonnet-4-5 prices in nanodollars per token: $3 input, $15 output,
# $0.30 cache read and $3.75 cache write per million tokens, as in
# lynkr_extproc/data/prices.yaml.
NANOS_PER_TOKEN = {
    "input_tokens": 3000,
    "output_tokens": 15000,
    "cache_read_tokens": 300,
    "cache_write_tokens": 3750,
}

CLAUDE_TIMEOUT_S = 120
NAMESPACE_RUN_TIMEOUT_S = 240
NOT_FOUND_ERROR = {
    "type": "error",
    "error": {
        "type": "not_found_error",
        "message": "the replay upstream has no recorded response for this request",
    },
}

TRAFFIC = [
    pytest.param(
        {"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"},
        {"tool_use": 1, "tool_result": 1},
        id="nonessential-traffic-off",
    ),
    pytest.param(
        {},
        {"tool_use": 1, "tool_result": 1, "title": 1},
        id="with-title-request",
    ),
]


@pytest.mark.parametrize(("settings", "expected_kinds"), TRAFFIC)
def test_claude_code_tool_turn(
    settings: dict[str, str],
    expected_kinds: dict[str, int],
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    """Claude Code runs a tool through lynkr, and every request is charged."""
    claude = find_claude()
    if os.environ.get(NAMESPACE_VARIABLE) != "1":
        run_in_loopback_namespace(request, claude, tmp_path)
        return

    interfaces = [name for _, name in socket.if_nameindex()]
    assert interfaces == ["lo"], f"expected only lo in the namespace: {interfaces}"

    replies = recorded_replies()
    usages = recorded_usages()

    def choose(received: Received) -> Reply:
        kind = request_kind(received)
        if kind not in replies:
            return Reply.json(NOT_FOUND_ERROR, status=404)
        return replies[kind]

    with ReplayUpstream(choose) as upstream:
        with Stack(claude_code_config(upstream.url, tmp_path / "spend.db")) as stack:
            result = run_claude(claude, stack.port, settings, tmp_path)
            rows = stack.records()
            balances = window_balances(stack)
            counters = envoy_counters(stack)

    # Claude Code finished the turn: it ran the tool and printed the final text.
    assert result.returncode == 0, describe(result)
    output = json.loads(result.stdout)
    assert output["is_error"] is False, output
    assert output["result"] == FINAL_TEXT, output
    assert output["permission_denials"] == [], output
    assert (tmp_path / "work" / "marker.txt").read_text() == MARKER_TEXT

    # The upstream saw the provider key, the tier model and no lynkr header.
    received = upstream.received
    kinds = Counter(request_kind(forwarded) for forwarded in received)
    assert kinds == Counter(expected_kinds), describe_requests(received)
    for forwarded in received:
        headers = forwarded.headers
        assert forwarded.path == "/v1/messages?beta=true"
        assert headers.get("x-api-key") == PROVIDER_KEY
        assert "authorization" not in headers
        assert VIRTUAL_KEY not in json.dumps(headers)
        assert VIRTUAL_KEY.encode() not in forwarded.body
        leaked = [name for name in headers if name.startswith(("lynkr-", "x-lynkr-"))]
        assert leaked == []
        assert forwarded.json()["model"] == TIER_MODEL

    # Envoy's counters: the replay upstream records only GET and POST, so
    # the cluster counter shows that no other request reached it. The one
    # rejected request is the HEAD / warm-up.
    assert counters["cluster.upstream_claude.upstream_rq_total"] == len(received)
    assert counters["http.lynkr.downstream_rq_4xx"] == 1, counters
    assert counters["http.lynkr.downstream_rq_5xx"] == 0, counters
    assert counters["http.lynkr.downstream_rq_total"] == len(received) + 1, counters

    # One spend row per request, at the recorded usage and exact prices.
    rows_by_id = {row["request_id"]: row for row in rows}
    assert len(rows) == len(received), rows
    request_ids = {forwarded.headers["x-request-id"] for forwarded in received}
    assert set(rows_by_id) == request_ids
    for forwarded in received:
        kind = request_kind(forwarded)
        usage = usages[kind]
        row = rows_by_id[forwarded.headers["x-request-id"]]
        assert row["cost_nanos"] == cost_nanos(usage), (kind, row)
        assert row["status"] == 200, (kind, row)
        assert row["usage_source"] == "reported", (kind, row)
        assert row["outcome"] == "completed", (kind, row)
        assert {name: row[name] for name in usage} == usage, (kind, row)
        assert row["key_id"] == "vk-cc"
        assert row["customer"] == CUSTOMER
        assert row["tier"] == "SIMPLE"
        assert row["upstream"] == "claude"
        assert row["model"] == TIER_MODEL

    # Both budget windows committed the whole cost, and no hold remains.
    total = sum(row["cost_nanos"] for row in rows)
    assert len(balances) == 2, balances
    for window, committed, held in balances:
        assert committed == total, window
        assert held == 0, window


# -- finding the CLI and the namespace -----------------------------------


def find_claude() -> str:
    """Return the Claude Code executable, or skip the test without one."""
    configured = os.environ.get(CLAUDE_BIN_VARIABLE)
    if configured:
        if not os.access(configured, os.X_OK):
            pytest.fail(
                f"{CLAUDE_BIN_VARIABLE}={configured!r} is not an executable file; "
                f"set it to the path that tests/install_claude_code.sh DIR prints"
            )
        return os.path.abspath(configured)
    found = shutil.which("claude")
    if found is None:
        pytest.skip(
            f"Claude Code CLI not found: set {CLAUDE_BIN_VARIABLE} or put claude "
            f"on PATH (tests/install_claude_code.sh DIR installs it)"
        )
    return found


def run_in_loopback_namespace(
    request: pytest.FixtureRequest, claude: str, tmp_path: Path
) -> None:
    """Run this test again in a new network namespace with only lo, up."""
    for tool, package in (("unshare", "util-linux"), ("ip", "iproute2")):
        if shutil.which(tool) is None:
            pytest.skip(
                f"{tool} not found: install {package}, which the test needs "
                f"for a loopback-only network namespace"
            )
    probe = subprocess.run(
        ["unshare", "-n", "sh", "-c", "ip link set lo up"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if probe.returncode != 0:
        pytest.skip(
            f"cannot create a network namespace (needs root or CAP_SYS_ADMIN): "
            f"unshare -n failed: {probe.stderr.strip()}"
        )

    command = [
        "unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh",
        sys.executable, "-m", "pytest", "-q", "--tb=short", "-p", "no:cacheprovider",
        f"--basetemp={tmp_path / 'namespace'}", request.node.nodeid,
    ]  # fmt: skip
    env = {**os.environ, NAMESPACE_VARIABLE: "1", CLAUDE_BIN_VARIABLE: claude}
    result = run_bounded(
        command, NAMESPACE_RUN_TIMEOUT_S, cwd=request.config.rootpath, env=env
    )
    if result.returncode != 0 or "1 passed" not in result.stdout:
        pytest.fail(f"failed in the namespace, {describe(result)}", pytrace=False)


def run_bounded(
    command: list[str], timeout_s: float, **options: Any
) -> subprocess.CompletedProcess[str]:
    """Run `command` in its own process group and kill the group on timeout."""
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        **options,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate(timeout=30)
        result = subprocess.CompletedProcess(command, -signal.SIGKILL, stdout, stderr)
        pytest.fail(f"{command[0]} timed out after {timeout_s} s:\n{describe(result)}")
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


# -- the run ---------------------------------------------------------------


def claude_code_config(upstream_url: str, store_path: Path) -> dict[str, Any]:
    """Return a config with one Anthropic tier, the key and two budgets."""
    document = base_config({"claude": ("anthropic", upstream_url)}, store_path)
    document["tiers"] = {"SIMPLE": {"upstream": "claude", "model": TIER_MODEL}}
    document["routing"] = {"bands": {"SIMPLE": 100}}
    document["keys"] = [
        {
            "id": "vk-cc",
            "sha256": key_hash(VIRTUAL_KEY),
            "team": "t1",
            "org": "o1",
            "customers": [CUSTOMER],
        }
    ]
    document["budgets"] = {
        "team": {"t1": [{"period": "total", "limit_usd": 5}]},
        "customer": {CUSTOMER: [{"period": "total", "limit_usd": 5}]},
    }
    return document


def run_claude(
    claude: str, port: int, settings: dict[str, str], tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    """Run one non-interactive Claude Code prompt with a throwaway home."""
    home, work, temp = tmp_path / "home", tmp_path / "work", tmp_path / "tmp"
    for folder in (home, work, temp):
        folder.mkdir()
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": str(home),
        "TMPDIR": str(temp),
        "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{port}",
        "ANTHROPIC_API_KEY": VIRTUAL_KEY,
        "ANTHROPIC_CUSTOM_HEADERS": "\n".join(
            f"{name}: {value}" for name, value in TENANT_HEADERS.items()
        ),
        "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_ERROR_REPORTING": "1",
        **settings,
    }
    command = [
        claude, "-p", PROMPT, "--output-format", "json",
        "--allowedTools", "Bash", "--max-turns", "3",
    ]  # fmt: skip
    return run_bounded(command, CLAUDE_TIMEOUT_S, cwd=work, env=env)


def window_balances(stack: Stack) -> list[tuple[str, int, int]]:
    """Return (window, committed, held) nanodollars of every budget window."""
    gateway = stack.service.service.servicer.gateway
    key = gateway.config.keys[key_hash(VIRTUAL_KEY)]
    balances = []
    for charge in gateway.charges(Tenant(key, CUSTOMER)):
        committed, held = stack.service.run(stack.service.store.balance(charge))
        window = f"{charge.level} {charge.id} {charge.window}"
        balances.append((window, committed, held))
    return balances


def envoy_counters(stack: Stack) -> dict[str, int]:
    """Return Envoy's request counters by name, from the admin /stats page."""
    counters = {}
    for line in stack.envoy.stats().splitlines():
        name, _, value = line.partition(": ")
        if "_rq_" in name and value.isdigit():
            counters[name] = int(value)
    return counters


def cost_nanos(usage: dict[str, int]) -> int:
    return sum(NANOS_PER_TOKEN[name] * usage[name] for name in NANOS_PER_TOKEN)


# -- requests and recorded replies -----------------------------------------


def request_kind(received: Received) -> str:
    """Classify a request that reached the upstream, or return "unexpected"."""
    if received.method != "POST" or received.path.partition("?")[0] != "/v1/messages":
        return "unexpected"
    try:
        body = received.json()
    except ValueError:
        return "unexpected"
    messages = body.get("messages") or [{}]
    last_content = messages[-1].get("content")
    if isinstance(last_content, list) and any(
        isinstance(block, dict) and block.get("type") == "tool_result"
        for block in last_content
    ):
        return "tool_result"
    tools = body.get("tools") or []
    if not tools and (body.get("output_config") or {}).get("format"):
        return "title"
    if "Bash" in {tool.get("name") for tool in tools}:
        return "tool_use"
    return "unexpected"


def recorded_replies() -> dict[str, Reply]:
    """Return the reply for each request kind, built from the fixtures."""
    tool_stream = "anthropic/message_stream_tool_use"
    text_stream = "anthropic/message_stream"

    tool_use = read_events(fixture_body(tool_stream))
    tool_input = json.dumps(TOOL_INPUT)
    set_streamed_text(tool_use, "input_json_delta", "partial_json", tool_input)
    for _, data in tool_use:
        block = data.get("content_block", {})
        if data["type"] == "content_block_start" and block["type"] == "tool_use":
            block["name"] = "Bash"

    title = read_events(fixture_body(text_stream))
    set_streamed_text(title, "text_delta", "text", json.dumps(TITLE))

    return {
        "tool_use": stream_reply(tool_stream, write_events(tool_use)),
        "tool_result": stream_reply(text_stream, fixture_body(text_stream)),
        "title": stream_reply(text_stream, write_events(title)),
    }


def recorded_usages() -> dict[str, dict[str, int]]:
    """Return the usage of each reply, from the fixtures' metadata."""
    tool_use = fixture_meta("anthropic/message_stream_tool_use")["usage"]
    text = fixture_meta("anthropic/message_stream")["usage"]
    return {"tool_use": tool_use, "tool_result": text, "title": text}


def fixture_meta(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def fixture_body(name: str) -> bytes:
    return (FIXTURES / f"{name}.body").read_bytes()


def stream_reply(name: str, body: bytes) -> Reply:
    """Build a reply of `body`, one event per chunk, with NAME's status and headers."""
    meta = fixture_meta(name)
    chunks = [event + b"\n\n" for event in body.split(b"\n\n") if event]
    return Reply(status=meta["status"], headers=dict(meta["headers"]), chunks=chunks)


def read_events(body: bytes) -> list[tuple[str, dict[str, Any]]]:
    """Parse a recorded stream of `event:` and `data:` line pairs."""
    events = []
    for block in body.decode().split("\n\n"):
        if not block:
            continue
        fields = dict(line.split(": ", 1) for line in block.split("\n"))
        events.append((fields["event"], json.loads(fields["data"])))
    return events


def write_events(events: list[tuple[str, dict[str, Any]]]) -> bytes:
    return b"".join(
        f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()
        for name, data in events
    )


def set_streamed_text(
    events: list[tuple[str, dict[str, Any]]], delta_type: str, field: str, text: str
) -> None:
    """Spread `text` over the stream's `delta_type` deltas, keeping their count."""
    deltas = [
        data["delta"]
        for _, data in events
        if data["type"] == "content_block_delta" and data["delta"]["type"] == delta_type
    ]
    size = math.ceil(len(text) / len(deltas))
    for index, delta in enumerate(deltas):
        delta[field] = text[index * size : (index + 1) * size]


# -- failure messages --------------------------------------------------------


def describe(result: subprocess.CompletedProcess[str]) -> str:
    return (
        f"exit status {result.returncode}\n"
        f"--- stdout\n{result.stdout[-6000:]}\n--- stderr\n{result.stderr[-6000:]}"
    )


def describe_requests(received: list[Received]) -> str:
    lines = []
    for forwarded in received:
        try:
            fields = sorted(forwarded.json())
        except ValueError:
            fields = []
        kind = request_kind(forwarded)
        lines.append(f"{forwarded.method} {forwarded.path} [{kind}] fields={fields}")
    return "requests the upstream received:\n" + "\n".join(lines)
