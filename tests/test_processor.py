"""The real ext_proc server driven over gRPC, message by message.

These tests play Envoy's part with request builders, so that they can cut,
cancel or reorder a stream; tests/test_e2e.py runs the same server behind
a real Envoy.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

import grpc
import pytest

from tests.support import cases
from tests.support.grpc_client import (
    ExtProcStream,
    headers_of,
    immediate_json,
    request_body,
    request_headers,
    response_body,
    response_headers,
)
from tests.support.backends import BACKENDS, backend_settings
from tests.support.harness import Harness

def chat(model: str = "gpt-4o-mini", **extra: object) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}


def messages(model: str = "claude-sonnet-4", **extra: object) -> dict:
    return {"model": model, "max_tokens": 1000, "messages": [{"role": "user", "content": "hi"}], **extra}


def auth(key_id: str = "vk-a", **headers: str) -> dict[str, str]:
    return {"x-api-key": cases.secret(key_id), "x-request-id": f"req-{key_id}", **headers}


def admit(stream: ExtProcStream, path: str, body: dict, headers: dict[str, str]):
    first = stream.send(request_headers(path, headers))
    assert first.WhichOneof("response") == "request_headers", first
    return stream.send(request_body(body))


def monthly(usd: str) -> list[dict]:
    return [{"period": "month", "limit_usd": usd}]


@pytest.fixture(params=BACKENDS)
def backend(request, tmp_path: Path):
    """Each test runs on every budget store backend."""
    for settings in backend_settings(request.param, tmp_path):
        yield request.param, settings


@pytest.fixture
def document(backend) -> dict:
    return cases.document(backend[1])


# -- routing ---------------------------------------------------------------


def test_body_phase_sets_route_header_and_clears_cache(document):
    """The body-phase reply carries the routing header as raw_value with clear_route_cache."""
    with Harness(document) as harness:
        reply = admit(harness.stream(), "/v1/chat/completions", chat(), auth())
    common = reply.request_body.response
    assert common.clear_route_cache is True
    options = {o.header.key: o.header for o in common.header_mutation.set_headers}
    assert options["x-lynkr-upstream"].raw_value == b"openai"
    assert options["x-lynkr-upstream"].value == ""
    assert options["authorization"].raw_value == b"Bearer provider-secret-openai"


def test_headers_phase_removes_client_routing_and_key_headers(document):
    """Spoofed routing and tenant headers and the client's key are removed first."""
    with Harness(document) as harness:
        stream = harness.stream()
        headers = auth(**{"x-lynkr-upstream": "anthropic", "lynkr-tier": "REASONING", "api-key": "x"})
        reply = stream.send(request_headers("/v1/chat/completions?beta=true", headers))
    removed = set(reply.request_headers.response.header_mutation.remove_headers)
    assert {"x-lynkr-upstream", "lynkr-tier", "api-key", "x-api-key", "accept-encoding"} <= removed
    assert reply.request_headers.response.clear_route_cache is True


def test_tier_header_ignored_without_override_permission(document):
    """lynkr-tier from a key without tier_override has no effect."""
    body = {"model": "some-client-model", "messages": [{"role": "user", "content": "hi"}]}
    with Harness(document) as harness:
        reply = admit(harness.stream(), "/v1/chat/completions", body, auth(**{"lynkr-tier": "REASONING"}))
    options = headers_of(reply.request_body.response.header_mutation)
    assert options["x-lynkr-upstream"] == b"openai"
    assert json.loads(reply.request_body.response.body_mutation.body)["model"] == "gpt-4o-mini"


def test_tier_header_honoured_with_override_permission(document):
    """A key with tier_override picks its tier by header."""
    document["keys"].append(cases.key("vk-o", tier_override=True))
    body = {"model": "some-client-model", "messages": [{"role": "user", "content": "hi"}]}
    with Harness(document) as harness:
        stream = harness.stream()
        reply = admit(stream, "/v1/chat/completions", body, auth("vk-o", **{"lynkr-tier": "REASONING"}))
    assert json.loads(reply.request_body.response.body_mutation.body)["model"] == "reasoner-x"


def test_non_llm_path_passes_through_without_bodies(document):
    """A GET of /v1/models is routed with credentials and its bodies skipped."""
    with Harness(document) as harness:
        reply = harness.stream().send(request_headers("/v1/models", auth(), method="GET", end_of_stream=True))
    mode = reply.mode_override
    assert mode.request_body_mode == mode.NONE
    assert mode.response_header_mode == mode.SKIP
    assert headers_of(reply.request_headers.response.header_mutation)["x-lynkr-upstream"] == b"openai"


def test_unexpected_message_closes_stream(document):
    """A response body before any request headers closes the stream with an error."""
    with Harness(document) as harness:
        stream = harness.stream()
        with pytest.raises(grpc.RpcError) as caught:
            stream.send(response_body(b"{}", end_of_stream=True))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "invalid input response_body in state request_headers" in caught.value.details()


# -- tenants ---------------------------------------------------------------


def test_missing_key_gets_401(document):
    """No key in any header: 401 in the client's API error format."""
    with Harness(document) as harness:
        reply = harness.stream().send(request_headers("/v1/messages", {}))
    status, headers, body = immediate_json(reply)
    assert status == 401
    assert body["type"] == "error"
    assert body["error"]["type"] == "authentication_error"
    assert headers["content-type"] == b"application/json"


def test_unknown_key_gets_401(document):
    """A key whose hash is not registered is rejected."""
    with Harness(document) as harness:
        reply = harness.stream().send(request_headers("/v1/chat/completions", {"authorization": "Bearer sk-nope"}))
    assert immediate_json(reply)[0] == 401


def test_anonymous_tenant_when_enabled(document):
    """With server.anonymous, keyless traffic is admitted as the default tenant."""
    document["server"]["anonymous"] = {"team": "public", "org": "o1"}
    with Harness(document) as harness:
        reply = admit(harness.stream(), "/v1/chat/completions", chat(), {"x-request-id": "anon-1"})
    assert reply.WhichOneof("response") == "request_body"


@pytest.mark.parametrize("header", ["lynkr-team-id", "lynkr-org-id"])
def test_tenant_header_mismatch_gets_403(document, header):
    """A team or org header that disagrees with the key is rejected (C30 variant)."""
    with Harness(document) as harness:
        reply = harness.stream().send(request_headers("/v1/chat/completions", auth(**{header: "o-other"})))
    status, _, body = immediate_json(reply)
    assert status == 403
    assert header in body["error"]["message"]


def test_customer_attribution_needs_permission(document):
    """C30: a key without attribution permission cannot bill customer acme."""
    document["keys"].append(cases.key("vk-regular", team="t-reg"))
    with Harness(document) as harness:
        reply = harness.stream().send(
            request_headers("/v1/chat/completions", auth("vk-regular", **{"lynkr-customer-id": "acme"}))
        )
        assert immediate_json(reply)[0] == 403
        assert harness.records() == []


def test_customer_attribution_with_permission(document):
    """C30: vk-saas bills customer acme and its own team and org."""
    document["keys"].append(cases.key("vk-saas", team="t-saas", org="o-saas", customers="*"))
    document["budgets"] = {"defaults": {level: monthly("100") for level in ("virtual_key", "team", "customer", "org")}}
    usage = {"usage": {"prompt_tokens": 1000, "completion_tokens": 0}}
    with Harness(document) as harness:
        stream = harness.stream()
        admit(stream, "/v1/chat/completions", chat(), auth("vk-saas", **{"lynkr-customer-id": "acme"}))
        stream.send(response_headers())
        stream.send(response_body(json.dumps(usage).encode(), end_of_stream=True))
        stream.close()
        records = harness.records()
        assert records[0]["customer"] == "acme"
        assert harness.committed("customer", "o-saas/acme") == 150_000
        assert harness.committed("team", "t-saas") == 150_000
        assert harness.committed("org", "o-saas") == 150_000
        assert harness.committed("virtual_key", "vk-saas") == 150_000


# -- budgets ---------------------------------------------------------------


def exhausted_team(document: dict) -> None:
    document["budgets"] = {"team": {"t1": monthly("100")}}


@pytest.mark.parametrize(
    ("path", "body"),
    [("/v1/chat/completions", chat()), ("/v1/messages", messages())],
    ids=["openai", "anthropic"],
)
def test_budget_429_body_and_retry_after(document, path, body):
    """C34: exhausted monthly team budget: 429 JSON, retry-after to the reset."""
    exhausted_team(document)
    with Harness(document) as harness:
        harness.seed("team", "t1", "100.02")
        reply = admit(harness.stream(), path, body, auth())
        status, headers, payload = immediate_json(reply)
        assert harness.holds() == 0
    assert status == 429
    assert headers["retry-after"] == b"3600"
    assert headers["content-type"] == b"application/json"
    error = payload["error"]
    assert payload["type"] == "error"
    assert error["type"] == "budget_exceeded"
    assert error["message"] == (
        "Budget exceeded for team=t1: monthly limit $100.00, spent $100.02, resets 2026-04-01T00:00:00Z"
    )
    assert (error["level"], error["id"], error["window"]) == ("team", "t1", "monthly")
    assert (error["limit_usd"], error["spent_usd"]) == ("100.00", "100.02")
    assert error["resets_at"] == "2026-04-01T00:00:00Z"


def test_openai_error_body_has_code_and_param(document):
    """C34 (a): OpenAI clients also get code and param in the error object."""
    exhausted_team(document)
    with Harness(document) as harness:
        harness.seed("team", "t1", "100.02")
        _, _, payload = immediate_json(admit(harness.stream(), "/v1/chat/completions", chat(), auth()))
    assert payload["error"]["code"] == "budget_exceeded"
    assert payload["error"]["param"] is None


def test_lifetime_budget_429_has_no_retry_after(document):
    """C34 (c): a total (never resetting) key budget gives no retry-after."""
    document["budgets"] = {"virtual_key": {"vk-a": [{"period": "total", "limit_usd": 1}]}}
    with Harness(document) as harness:
        harness.seed("virtual_key", "vk-a", "1.00", period="total")
        status, headers, payload = immediate_json(admit(harness.stream(), "/v1/chat/completions", chat(), auth()))
    assert status == 429
    assert "retry-after" not in headers
    assert payload["error"]["resets_at"] is None


def test_levels_checked_in_order_c25(document):
    """C25: team t1 full while the key has room: 429 names team t1."""
    document["keys"].append(cases.key("vk-1"))
    document["budgets"] = {
        "org": {"o1": monthly("100")},
        "team": {"t1": monthly("1.00")},
        "virtual_key": {"vk-1": monthly("2.00")},
    }
    with Harness(document) as harness:
        harness.seed("org", "o1", "10")
        harness.seed("team", "t1", "1.00")
        harness.seed("virtual_key", "vk-1", "1.20")
        headers = auth("vk-1", **{"lynkr-team-id": "t1", "lynkr-org-id": "o1"})
        _, _, payload = immediate_json(admit(harness.stream(), "/v1/chat/completions", chat(), headers))
    assert (payload["error"]["level"], payload["error"]["id"]) == ("team", "t1")


def test_key_level_rejects_c25_variant_2(document):
    """C25 variant 2: the team has room, the key is full: 429 names key vk-1."""
    document["keys"].append(cases.key("vk-1"))
    document["budgets"] = {"team": {"t1": monthly("1.00")}, "virtual_key": {"vk-1": monthly("1.00")}}
    with Harness(document) as harness:
        harness.seed("virtual_key", "vk-1", "1.00")
        _, _, payload = immediate_json(admit(harness.stream(), "/v1/chat/completions", chat(), auth("vk-1")))
    assert (payload["error"]["level"], payload["error"]["id"]) == ("virtual_key", "vk-1")


def test_customer_level_rejects_c25_variant_3(document):
    """C25 variant 3: key and team have room, customer c-7 is over its limit."""
    document["keys"].append(cases.key("vk-1", customers=["c-7"]))
    document["budgets"] = {"customer": {"c-7": monthly("1.00")}}
    with Harness(document) as harness:
        harness.seed("customer", "o1/c-7", "1.50")
        headers = auth("vk-1", **{"lynkr-customer-id": "c-7"})
        _, _, payload = immediate_json(admit(harness.stream(), "/v1/chat/completions", chat(), headers))
    assert (payload["error"]["level"], payload["error"]["id"]) == ("customer", "c-7")


@pytest.mark.parametrize("body_user", [None, "c-99"])
def test_customer_from_header_is_checked_c24(document, body_user):
    """C24: customer c-42 named by header is over budget; a body user never overrides it."""
    document["budgets"] = {"customer": {"c-42": [{"period": "month", "limit_usd": 5}]}}
    body = chat() if body_user is None else chat(user=body_user)
    with Harness(document) as harness:
        harness.seed("customer", "o1/c-42", "5.01")
        headers = auth(**{"lynkr-customer-id": "c-42"})
        status, _, payload = immediate_json(admit(harness.stream(), "/v1/chat/completions", body, headers))
    assert status == 429
    assert (payload["error"]["level"], payload["error"]["id"]) == ("customer", "c-42")


def test_first_seen_customer_is_under_default(document):
    """A customer with no entry of its own is limited by the customer default at once."""
    document["budgets"] = {"defaults": {"customer": [{"period": "day", "limit_usd": 0}]}}
    with Harness(document) as harness:
        headers = auth(**{"lynkr-customer-id": "c-42"})
        status, _, payload = immediate_json(admit(harness.stream(), "/v1/chat/completions", chat(), headers))
    assert status == 429
    assert payload["error"]["level"] == "customer"


def test_zero_limit_suspends_even_free_requests(document):
    """A limit of 0 rejects even a request whose estimate is 0."""
    document["pricing"]["models"]["gpt-4o-mini"] = {"input": 0, "output": 0}
    document["budgets"] = {"team": {"t1": monthly("0")}}
    with Harness(document) as harness:
        status, _, _ = immediate_json(admit(harness.stream(), "/v1/chat/completions", chat(), auth()))
    assert status == 429


def run_request(harness: Harness, body: dict, usage: dict, request_id: str, key_id: str = "vk-a") -> None:
    stream = harness.stream()
    reply = admit(stream, "/v1/chat/completions", body, auth(key_id, **{"x-request-id": request_id}))
    assert reply.WhichOneof("response") == "request_body", reply
    stream.send(response_headers())
    stream.send(response_body(json.dumps(usage).encode(), end_of_stream=True))
    stream.close()


def test_ten_dimes_make_exactly_one_dollar_c16(document):
    """C16: ten $0.10 charges commit exactly $1.00 and the 11th request is rejected."""
    document["keys"].append(cases.key("vk-f"))
    document["budgets"] = {"virtual_key": {"vk-f": [{"period": "total", "limit_usd": 1.00}]}}
    document["tiers"]["MEDIUM"]["max_output_estimate"] = 1
    usage = {"usage": {"prompt_tokens": 40000, "completion_tokens": 0}}
    with Harness(document) as harness:
        for index in range(10):
            run_request(harness, chat("gpt-4o", messages=[{"role": "user", "content": "x"}]), usage, f"dime-{index}", "vk-f")
        harness.service.drain()
        assert harness.committed("virtual_key", "vk-f", period="total") == 1_000_000_000
        status, _, payload = immediate_json(admit(harness.stream(), "/v1/chat/completions", chat("gpt-4o"), auth("vk-f")))
    assert status == 429
    assert (payload["error"]["level"], payload["error"]["id"]) == ("virtual_key", "vk-f")


def test_spend_through_real_stream_then_429_c29(document):
    """C29: spend recorded through the stream is what the next admission reads."""
    document["keys"].append(cases.key("vk-l"))
    document["budgets"] = {"virtual_key": {"vk-l": [{"period": "total", "limit_usd": 0.005}]}}
    stream_body = b"".join(
        f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode()
        for kind, data in [
            ("message_start", {"type": "message_start", "message": {"usage": {"input_tokens": 1200, "output_tokens": 1}}}),
            ("message_delta", {"type": "message_delta", "usage": {"output_tokens": 300}}),
            ("message_stop", {"type": "message_stop"}),
        ]
    )
    with Harness(document) as harness:
        stream = harness.stream()
        first = stream.send(request_headers("/v1/messages", {"x-api-key": cases.secret("vk-l")}))
        assert first.WhichOneof("response") == "request_headers"
        stream.send(request_body(messages(max_tokens=10)))
        stream.send(response_headers(content_type="text/event-stream"))
        stream.send(response_body(stream_body, end_of_stream=True))
        stream.close()
        records = harness.records()
        assert len(records) == 1
        assert records[0]["request_id"]
        assert records[0]["cost_nanos"] == 8_100_000
        assert harness.committed("virtual_key", "vk-l", period="total") == 8_100_000
        second = admit(harness.stream(), "/v1/messages", messages(), {"x-api-key": cases.secret("vk-l")})
        status, _, payload = immediate_json(second)
    assert status == 429
    assert payload["error"]["id"] == "vk-l"


def test_unpriced_model_rejected_for_budgeted_tenant_c13(document):
    """C13 (a): an unpriced upstream model is rejected before going upstream."""
    document["budgets"] = {"team": {"t1": monthly("1.00")}}
    with Harness(document) as harness:
        reply = admit(harness.stream(), "/v1/chat/completions", chat("deepinfra/new-model-x"), auth())
        status, _, payload = immediate_json(reply)
        assert harness.records() == []
    assert status == 400
    assert payload["error"]["type"] == "model_not_priced"
    assert "deepinfra/new-model-x" in payload["error"]["message"]


def test_unpriced_model_fallback_price_c13(document):
    """C13 (b): with a fallback price the record is charged and flagged unpriced."""
    document["budgets"] = {"team": {"t1": monthly("1.00")}}
    document["pricing"]["unpriced"] = {"input": 10, "output": 30}
    usage = {"usage": {"prompt_tokens": 1000, "completion_tokens": 500}}
    with Harness(document) as harness:
        run_request(harness, chat("deepinfra/new-model-x"), usage, "unpriced-1")
        record = harness.records()[0]
    assert record["cost_nanos"] == 25_000_000
    assert "unpriced" in json.loads(record["flags"])


def test_concurrent_requests_across_two_replicas_c23(document):
    """C23: five simultaneous requests, two replicas, one shared store: exactly one admitted."""
    document["budgets"] = {"team": {"t1": monthly("1.00")}}
    # 800 characters estimate 200 input tokens: 200*3 + 1000*15 per M = $0.0156.
    body = messages(messages=[{"role": "user", "content": "x" * 800}])
    second = dict(document, server=dict(document["server"], listen=f"127.0.0.1:{cases.free_port()}"))
    with Harness(document) as first_replica, Harness(second) as second_replica:
        first_replica.seed("team", "t1", "0.98")
        barrier = threading.Barrier(5)
        streams = [(first_replica if index % 2 else second_replica).stream() for index in range(5)]
        replies: list = [None] * 5

        def send(index: int) -> None:
            stream = streams[index]
            stream.send(request_headers("/v1/messages", auth(**{"x-request-id": f"c23-{index}"})))
            barrier.wait()
            replies[index] = stream.send(request_body(body))

        threads = [threading.Thread(target=send, args=(index,)) for index in range(5)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        admitted = [i for i, reply in enumerate(replies) if reply.WhichOneof("response") == "request_body"]
        rejected = [immediate_json(r)[2]["error"] for r in replies if r.WhichOneof("response") == "immediate_response"]
        assert len(admitted) == 1
        assert len(rejected) == 4
        assert all((error["level"], error["id"]) == ("team", "t1") for error in rejected)
        winner = streams[admitted[0]]
        usage = {"type": "message", "usage": {"input_tokens": 200, "output_tokens": 100}}
        winner.send(response_headers())
        winner.send(response_body(json.dumps(usage).encode(), end_of_stream=True))
        winner.close()
        first_replica.service.drain()
        second_replica.service.drain()
        assert first_replica.committed("team", "t1") == 982_100_000
        assert first_replica.holds() == 0


# -- spend -----------------------------------------------------------------


def sse(*events: tuple[str, dict]) -> list[bytes]:
    return [f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode() for kind, data in events]


def test_client_abort_mid_stream_is_billed_c22(document):
    """C22: a stream cancelled before message_delta bills input and estimated output."""
    document["budgets"] = {"team": {"t1": monthly("10")}}
    chunks = sse(
        ("message_start", {"type": "message_start", "message": {"model": "claude-sonnet-4", "usage": {"input_tokens": 25, "output_tokens": 1}}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Once upon a time"}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": ", in a lighthouse"}}),
    )
    with Harness(document) as harness:
        stream = harness.stream()
        admit(stream, "/v1/messages", messages(), auth())
        stream.send(response_headers(content_type="text/event-stream"))
        for chunk in chunks:
            stream.send(response_body(chunk))
        stream.cancel()
        records = harness.records(expected=1)
        assert harness.holds() == 0
    assert len(records) == 1
    record = records[0]
    assert record["outcome"] == "partial"
    assert record["input_tokens"] == 25
    assert record["output_tokens"] == 9
    assert record["cost_nanos"] == 210_000
    assert record["usage_source"] == "estimated"


def test_close_after_terminal_event_is_completed_c07(document):
    """C07: response.completed then a reset is a completed request, usage from response.usage."""
    event = {
        "type": "response.completed",
        "response": {
            "id": "resp_9", "status": "completed", "model": "gpt-4o",
            "usage": {"input_tokens": 1000, "input_tokens_details": {"cached_tokens": 600},
                      "output_tokens": 50, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 1050},
        },
    }
    with Harness(document) as harness:
        stream = harness.stream()
        admit(stream, "/v1/responses", {"model": "gpt-4o", "input": "hi", "stream": True}, auth())
        stream.send(response_headers(content_type="text/event-stream"))
        stream.send(response_body(sse(("response.completed", event))[0]))
        stream.cancel()
        record = harness.records(expected=1)[0]
    assert record["outcome"] == "completed"
    assert record["cost_nanos"] == 2_250_000
    assert record["usage_source"] == "reported"


def test_failed_responses_stream_without_usage_c06(document):
    """C06: response.failed with usage null: a failed record of 0 tokens, flagged."""
    chunks = sse(
        ("response.created", {"type": "response.created", "response": {"id": "resp_1", "status": "in_progress", "usage": None}}),
        ("response.output_text.delta", {"type": "response.output_text.delta", "delta": "Hel"}),
        ("response.failed", {"type": "response.failed", "response": {"id": "resp_1", "status": "failed", "usage": None, "error": {"code": "server_error", "message": "boom"}}}),
    )
    with Harness(document) as harness:
        stream = harness.stream()
        admit(stream, "/v1/responses", {"model": "gpt-4o", "input": "hi", "stream": True}, auth())
        stream.send(response_headers(content_type="text/event-stream"))
        for index, chunk in enumerate(chunks):
            stream.send(response_body(chunk, end_of_stream=index == len(chunks) - 1))
        stream.close()
        record = harness.records()[0]
        assert harness.holds() == 0
    assert record["outcome"] == "failed"
    assert record["cost_nanos"] == 0
    assert "no_usage_reported" in json.loads(record["flags"])


@pytest.mark.parametrize("forward", [False, True], ids=["removed", "forwarded"])
def test_injected_usage_chunk_setting_c01(document, forward):
    """C01: include_usage is injected; the usage chunk reaches the client only if configured."""
    document["stream_usage"] = {"forward_to_client": forward}
    chunks = [
        b'data: {"id":"c1","object":"chat.completion.chunk","model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"Hello"},"finish_reason":null}]}\n\n',
        b'data: {"id":"c1","object":"chat.completion.chunk","model":"gpt-4o-mini","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n',
        b'data: {"id":"c1","object":"chat.completion.chunk","model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}}\n\n',
        b"data: [DONE]\n\n",
    ]
    body = {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    with Harness(document) as harness:
        stream = harness.stream()
        reply = admit(stream, "/v1/chat/completions", body, auth(**{"lynkr-team-id": "t1"}))
        sent = json.loads(reply.request_body.response.body_mutation.body)
        assert sent == {**body, "stream_options": {"include_usage": True}}
        stream.send(response_headers(content_type="text/event-stream"))
        delivered = []
        for index, chunk in enumerate(chunks):
            answer = stream.send(response_body(chunk, end_of_stream=index == 3)).response_body.response
            delivered.append(answer.body_mutation.body if answer.HasField("body_mutation") else chunk)
        stream.close()
        record = harness.records()[0]
    assert record["cost_nanos"] == 2_550, record
    assert (record["key_id"], record["team"]) == ("vk-a", "t1")
    if forward:
        assert b"".join(delivered) == b"".join(chunks)
    else:
        assert b"".join(delivered) == chunks[0] + chunks[1] + chunks[3]


def test_client_that_asked_for_usage_keeps_usage_chunk(document):
    """A client that set include_usage itself receives the usage chunk unchanged."""
    body = {"model": "gpt-4o-mini", "stream": True, "stream_options": {"include_usage": True}, "messages": [{"role": "user", "content": "hi"}]}
    usage_chunk = b'data: {"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2}}\n\n'
    with Harness(document) as harness:
        stream = harness.stream()
        reply = admit(stream, "/v1/chat/completions", body, auth())
        assert not reply.request_body.response.HasField("body_mutation")
        stream.send(response_headers(content_type="text/event-stream"))
        answer = stream.send(response_body(usage_chunk, end_of_stream=True)).response_body.response
        stream.close()
    assert not answer.HasField("body_mutation")


def test_missing_request_id_gets_generated_one_c29(document):
    """C29 variant: without x-request-id the record still gets a generated id."""
    with Harness(document) as harness:
        stream = harness.stream()
        stream.send(request_headers("/v1/chat/completions", {"x-api-key": cases.secret("vk-a")}))
        stream.send(request_body(chat()))
        stream.send(response_headers())
        stream.send(response_body(b'{"usage":{"prompt_tokens":1,"completion_tokens":1}}', end_of_stream=True))
        stream.close()
        records = harness.records()
    assert len(records) == 1
    assert len(records[0]["request_id"]) == 32


def test_same_request_id_is_charged_once(document):
    """Exactly once: a second record with the same request id changes no counter."""
    document["budgets"] = {"team": {"t1": monthly("10")}}
    usage = {"usage": {"prompt_tokens": 1000, "completion_tokens": 0}}
    with Harness(document) as harness:
        run_request(harness, chat(), usage, "dup-1")
        run_request(harness, chat(), usage, "dup-1")
        harness.service.drain()
        assert len(harness.records()) == 1
        assert harness.committed("team", "t1") == 150_000


def test_upstream_error_without_usage_is_failed_record(document):
    """A 500 from the upstream settles the hold with a failed, zero-cost record."""
    document["budgets"] = {"team": {"t1": monthly("10")}}
    with Harness(document) as harness:
        stream = harness.stream()
        admit(stream, "/v1/chat/completions", chat(), auth())
        stream.send(response_headers(500))
        stream.send(response_body(b'{"error":{"message":"upstream broke"}}', end_of_stream=True))
        stream.close()
        record = harness.records()[0]
        assert harness.holds() == 0
    assert (record["status"], record["outcome"], record["cost_nanos"]) == (500, "failed", 0)


def test_request_larger_than_maximum_gets_413(document):
    """C35: a body above server.max_request_bytes gets a JSON 413."""
    document["server"]["max_request_bytes"] = 4096
    with Harness(document) as harness:
        stream = harness.stream()
        stream.send(request_headers("/v1/chat/completions", auth()))
        reply = stream.send(request_body(chat(messages=[{"role": "user", "content": "x" * 5000}])))
    status, _, payload = immediate_json(reply)
    assert status == 413
    assert payload["error"]["type"] == "request_too_large"


def test_invalid_json_body_gets_400(document):
    """A body that is not JSON gets a 400 in the client's format."""
    with Harness(document) as harness:
        stream = harness.stream()
        stream.send(request_headers("/v1/messages", auth()))
        status, _, payload = immediate_json(stream.send(request_body(b"{not json")))
    assert status == 400
    assert payload["type"] == "error"
    assert "not valid JSON" in payload["error"]["message"]


def test_unreachable_redis_fails_closed_c28(document, backend):
    """C28: a Redis store that refuses connections rejects with 503 budget_unavailable."""
    if backend[0] == "sqlite":
        pytest.skip("the SQLite variant is the locked-file test")
    document["server"]["store"] = f"redis://127.0.0.1:{cases.free_port()}/0"
    document["server"]["store_timeout_ms"] = 200
    document["budgets"] = {"team": {"t1": monthly("5")}}
    with Harness(document) as harness:
        replies = [admit(harness.stream(), "/v1/chat/completions", chat(), auth()) for _ in range(3)]
    for reply in replies:
        status, _, payload = immediate_json(reply)
        assert status == 503
        assert payload["error"]["type"] == "budget_unavailable"


def test_store_locked_fails_closed_c28(document, backend):
    """C28: an unresponsive budget store gives 503 budget_unavailable."""
    if backend[0] != "sqlite":
        pytest.skip("locks a SQLite file; Redis is covered by the unreachable test")
    document["server"]["store_timeout_ms"] = 200
    document["budgets"] = {"team": {"t1": monthly("5")}}
    with Harness(document) as harness:
        blocker = sqlite3.connect(harness.path, timeout=0)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            reply = admit(harness.stream(), "/v1/chat/completions", chat(), auth())
        finally:
            blocker.rollback()
            blocker.close()
    status, _, payload = immediate_json(reply)
    assert status == 503
    assert payload["error"]["type"] == "budget_unavailable"


def test_store_locked_fails_open_when_configured_c28(document, backend):
    """C28: with store_failure open the request is admitted without a hold."""
    if backend[0] != "sqlite":
        pytest.skip("locks a SQLite file; Redis is covered by the fault tests")
    document["server"]["store_timeout_ms"] = 200
    document["server"]["store_failure"] = "open"
    document["budgets"] = {"team": {"t1": monthly("5")}}
    with Harness(document) as harness:
        blocker = sqlite3.connect(harness.path, timeout=0)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            reply = admit(harness.stream(), "/v1/chat/completions", chat(), auth())
        finally:
            blocker.rollback()
            blocker.close()
    assert reply.WhichOneof("response") == "request_body"


def test_tier_with_unset_credential_gets_503(document, monkeypatch):
    """A tier whose API key variable is unset gives 503 naming the variable."""
    monkeypatch.delenv("LYNKR_TEST_UNSET_KEY", raising=False)
    del document["upstreams"]["openai"]["api_key"]
    document["upstreams"]["openai"]["api_key_env"] = "LYNKR_TEST_UNSET_KEY"
    with Harness(document) as harness:
        status, _, payload = immediate_json(admit(harness.stream(), "/v1/chat/completions", chat(), auth()))
    assert status == 503
    assert payload["error"]["type"] == "upstream_unavailable"
    assert "LYNKR_TEST_UNSET_KEY" in payload["error"]["message"]


def test_count_tokens_goes_to_an_anthropic_upstream(document):
    """/v1/messages/count_tokens passes through to a tier that speaks Anthropic."""
    with Harness(document) as harness:
        reply = harness.stream().send(request_headers("/v1/messages/count_tokens?beta=true", auth()))
    assert headers_of(reply.request_headers.response.header_mutation)["x-lynkr-upstream"] == b"anthropic"
    assert reply.mode_override.request_body_mode == reply.mode_override.NONE


def test_json_response_split_across_chunks_c19(document):
    """C19: a JSON response delivered in three chunks is parsed once, whole."""
    pieces = [
        b'{"id":"chatcmpl-1","object":"chat.completion","model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"' + b"x" * 40_000,
        b'"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1000,',
        b'"completion_tokens":500,"total_tokens":1500}}',
    ]
    with Harness(document) as harness:
        stream = harness.stream()
        admit(stream, "/v1/chat/completions", chat(), auth())
        stream.send(response_headers())
        for index, piece in enumerate(pieces):
            stream.send(response_body(piece, end_of_stream=index == 2))
        stream.close()
        record = harness.records()[0]
    assert (record["input_tokens"], record["output_tokens"]) == (1000, 500)
    assert record["cost_nanos"] == 450_000


def test_burst_of_first_requests_from_new_customer(document):
    """Concurrent first requests of an unseen customer all meet the default at once."""
    document["keys"][0]["customers"] = "*"
    # Each request holds 1 input + 1000 output tokens of gpt-4o-mini, about
    # $0.0006; the default fits three of them.
    document["budgets"] = {"defaults": {"customer": [{"period": "day", "limit_usd": 0.002}]}}
    body = chat(max_tokens=1000)
    with Harness(document) as harness:
        streams = [harness.stream() for _ in range(10)]
        for stream in streams:
            stream.send(request_headers("/v1/chat/completions", auth(**{"lynkr-customer-id": "first-seen"})))
        barrier = threading.Barrier(10)
        replies: list = [None] * 10

        def send(index: int) -> None:
            barrier.wait()
            replies[index] = streams[index].send(request_body(body))

        threads = [threading.Thread(target=send, args=(index,)) for index in range(10)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    kinds = [reply.WhichOneof("response") for reply in replies]
    assert kinds.count("request_body") == 3
    assert kinds.count("immediate_response") == 7
