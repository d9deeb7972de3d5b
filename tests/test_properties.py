"""Property tests of the ext_proc stream, the stream framers and the input size limits.

Three groups:

- Random sequences of ProcessingRequest messages, in any order and with
  valid and malformed headers and bodies, go to the real gRPC server. Each
  message gets a reply of its own kind or an ImmediateResponse, or the
  stream closes with FAILED_PRECONDITION "invalid input X in state Y" (or
  "... for a fallback attempt"), never with INTERNAL or UNKNOWN. After
  every example the server still routes a valid request and no budget
  hold is left behind.
- SSE, NDJSON, AWS event stream and buffered JSON bodies give the same
  events, usage and client bytes however they are cut into chunks, and
  malformed input is dropped or flagged, never raised.
- Every input the service parses has a size limit with a clear error.

Hypothesis runs derandomized and without its example database, so that a
run is reproducible and writes no files into the work tree.
"""

from __future__ import annotations

import copy
import gzip
import itertools
import json
import logging
import queue
import re
import struct
import tracemalloc
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self

import grpc
import pytest
from envoy.service.ext_proc.v3 import external_processor_pb2 as ext_proc
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as ext_proc_grpc
from google.protobuf import struct_pb2
from hypothesis import HealthCheck, example, given, settings
from hypothesis import event as note_event
from hypothesis import strategies as st

from lynkr_extproc.formats import (
    BY_NAME,
    anthropic_messages,
    bedrock_converse,
    ollama,
    openai_chat,
    openai_responses,
)
from lynkr_extproc.framing import (
    EventStreamFramer,
    NDJSONFramer,
    encode_event_stream,
)
from lynkr_extproc.response_reader import MAX_RESPONSE_JSON_BYTES, ResponseReader
from lynkr_extproc.server import MAX_MESSAGE_BYTES
from lynkr_extproc.sse import DEFAULT_MAX_EVENT_BYTES, Event, SSEDecoder
from lynkr_extproc.translate import translation_for
from tests.support import cases
from tests.support.grpc_client import (
    headers_of,
    immediate_json,
    request_body,
    request_headers,
    response_body,
    response_headers,
)
from tests.support.harness import Harness
from tests.support.upstream import FIXTURES

MAX_REQUEST_BYTES = 1024 * 1024
"""server.max_request_bytes of the test server: small, so the limit is cheap to pass."""

STREAM_DEADLINE_S = 30.0
"""Deadline of every test stream: a server that stops replying fails the test."""

PROTOCOL_ERROR = re.compile(r"invalid input \w+ (in state \w+|for a fallback attempt)")
"""The FAILED_PRECONDITION details the server sends for a message out of order."""

STREAM_SETTINGS = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FRAMING_SETTINGS = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


# -- the server --------------------------------------------------------------


def _document(store: Path) -> dict:
    """Return the case config with a team budget, a fallback chain and a second key.

    The budget makes every admitted request take holds, so a hold left
    behind shows. Key vk-b belongs to team t2, which has no budget: the
    after-example check uses it, whatever spend the examples recorded.
    """
    document = cases.document(store)
    document["server"]["max_request_bytes"] = MAX_REQUEST_BYTES
    document["tiers"]["COMPLEX"]["fallback"] = [
        {"upstream": "openai", "model": "gpt-4o"}
    ]
    document["budgets"] = {"team": {"t1": [{"period": "month", "limit_usd": 1000}]}}
    document["keys"].append(cases.key("vk-b", team="t2"))
    return document


@pytest.fixture(scope="module")
def harness(tmp_path_factory) -> Iterator[Harness]:
    """Start one real server for the module, which every Hypothesis example reuses."""
    store = tmp_path_factory.mktemp("properties") / "store.db"
    with Harness(_document(store)) as running:
        yield running


class BoundedStream:
    """One ext_proc stream with a deadline: `send` returns the reply to one message."""

    def __init__(self, channel: grpc.Channel) -> None:
        self._outgoing: queue.Queue[Any] = queue.Queue()
        stub = ext_proc_grpc.ExternalProcessorStub(channel)
        self._call = stub.Process(self._requests(), timeout=STREAM_DEADLINE_S)
        self._replies = iter(self._call)

    def _requests(self) -> Iterator[ext_proc.ProcessingRequest]:
        while True:
            item = self._outgoing.get()
            if item is None:
                return
            yield item

    def send(self, message: ext_proc.ProcessingRequest) -> ext_proc.ProcessingResponse:
        self._outgoing.put(message)
        return next(self._replies)

    def close(self) -> None:
        """Half-close and read the rest, raising grpc.RpcError if the stream failed."""
        self._outgoing.put(None)
        for _ in self._replies:
            pass

    def stop(self) -> None:
        """End the request iterator, so gRPC's sending thread exits after a failure."""
        self._outgoing.put(None)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_sequence(
    harness: Harness, messages: list[ext_proc.ProcessingRequest]
) -> list[str]:
    """Send the messages on one stream, check every reply and return the outcomes."""
    outcomes: list[str] = []
    with BoundedStream(harness.channel) as stream:
        for message in messages:
            kind = message.WhichOneof("request")
            try:
                reply = stream.send(message)
            except StopIteration:
                # Only a fallback attempt's stream ends on the server's side,
                # after the ImmediateResponse of a failed attempt.
                outcomes.append("ended")
                return outcomes
            except grpc.RpcError as error:
                _check_closed(error, kind)
                outcomes.append("closed")
                return outcomes
            reply_kind = reply.WhichOneof("response")
            # Each ProcessingResponse kind has the name of the request it replies to.
            assert reply_kind in (kind, "immediate_response"), (
                f"a {kind} message got a {reply_kind} reply"
            )
            outcomes.append(reply_kind)
        try:
            stream.close()
        except grpc.RpcError as error:
            _check_closed(error, "half-close")
    return outcomes


def _check_closed(error: grpc.RpcError, kind: str | None) -> None:
    code, details = error.code(), error.details()
    assert code is grpc.StatusCode.FAILED_PRECONDITION, (
        f"after a {kind} message the stream failed with {code.name}: {details}"
    )
    assert PROTOCOL_ERROR.fullmatch(details), f"unexpected details: {details!r}"


def check_still_serving(harness: Harness, holds_before: int) -> None:
    """Check that a valid request is routed and settled, and no hold is left behind.

    Holds are compared with the count before the example, so that a hold
    leaked by one test fails that test only.
    """
    headers = {"x-api-key": cases.secret("vk-b")}
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    usage = {"usage": {"prompt_tokens": 3, "completion_tokens": 2}}
    with BoundedStream(harness.channel) as stream:
        first = stream.send(request_headers("/v1/chat/completions", headers))
        routed = stream.send(request_body(body))
        stream.send(response_headers(200))
        stream.send(response_body(json.dumps(usage).encode(), end_of_stream=True))
        stream.close()
    assert first.WhichOneof("response") == "request_headers"
    assert routed.WhichOneof("response") == "request_body", routed
    routing = headers_of(routed.request_body.response.header_mutation)
    assert routing["x-lynkr-upstream"] == b"openai"
    harness.service.drain()
    assert harness.service.service.servicer.active_streams == 0
    assert harness.holds() == holds_before, (
        "a stream ended without settling its budget hold"
    )


# -- message strategies ------------------------------------------------------

json_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
)
JSON_KEYS = [
    "model",
    "messages",
    "role",
    "content",
    "type",
    "text",
    "tool_calls",
    "function",
    "arguments",
    "name",
    "tools",
    "images",
    "stream",
    "stream_options",
    "include_usage",
    "max_tokens",
    "input",
    "system",
    "prompt",
    "options",
    "usage",
    "choices",
    "delta",
    "message",
    "response",
    "done",
    "metadata",
    "output",
]
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(JSON_KEYS) | st.text(max_size=6), children, max_size=3
        )
    ),
    max_leaves=8,
)


def _children(node: Any) -> list[tuple[Any, Any]]:
    if isinstance(node, dict):
        return list(node.items())
    if isinstance(node, list):
        return list(enumerate(node))
    return []


def _has_child(node: Any, key: Any) -> bool:
    if isinstance(node, dict):
        return key in node
    return isinstance(node, list) and isinstance(key, int) and key < len(node)


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Return the path of every node of a JSON document, the root excluded."""
    found: list[tuple] = []
    for key, child in _children(node):
        path = (*prefix, key)
        found.append(path)
        found += _paths(child, path)
    return found


def _set_at(document: Any, path: tuple, value: Any) -> Any:
    """Replace the node at `path`, unless an earlier mutation removed its parent."""
    node = document
    for key in path[:-1]:
        if not _has_child(node, key):
            return document
        node = node[key]
    if isinstance(node, dict) or _has_child(node, path[-1]):
        node[path[-1]] = value
    return document


@st.composite
def mutated(draw: st.DrawFn, template: Any) -> Any:
    """Generate a copy of a JSON document with up to three nodes made random JSON."""
    document = copy.deepcopy(template)
    paths = _paths(document)
    for path in draw(st.lists(st.sampled_from(paths), max_size=3)):
        _set_at(document, path, draw(json_values))
    return document


REQUESTS = {
    "/v1/chat/completions": {
        "model": "gpt-4o-mini",
        "stream": True,
        "max_tokens": 64,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "hi"}]},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "f", "arguments": "{}"},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "42"},
        ],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
        "stream_options": {"include_usage": True},
    },
    "/v1/messages": {
        "model": "claude-sonnet-4",
        "max_tokens": 64,
        "stream": True,
        "system": [{"type": "text", "text": "Be brief."}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "hi"}]},
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}}
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "t1", "content": "42"}
                ],
            },
        ],
        "tools": [{"name": "f", "input_schema": {"type": "object"}}],
    },
    "/v1/responses": {
        "model": "gpt-4o-mini",
        "stream": True,
        "instructions": "Be brief.",
        "max_output_tokens": 64,
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "hi"}]},
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "42"},
        ],
        "tools": [{"type": "function", "name": "f", "parameters": {}}],
    },
    "/api/chat": {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "hi", "images": []}],
        "options": {"num_predict": 64},
        "tools": [{"type": "function", "function": {"name": "f"}}],
    },
    "/api/generate": {
        "model": "gpt-4o-mini",
        "prompt": "hi",
        "system": "Be brief.",
        "stream": False,
        "images": [],
    },
}
"""A valid request body for every LLM path, which mutations start from."""

RESPONSES_BY_API = {
    "anthropic_messages": [
        {
            "type": "message_start",
            "message": {"usage": {"input_tokens": 5, "output_tokens": 1}},
        },
        {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "hi"}},
        {"type": "message_delta", "usage": {"output_tokens": 3}},
        {"type": "message_stop"},
        {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}},
    ],
    "openai_chat": [
        {
            "choices": [
                {
                    "delta": {
                        "content": "hi",
                        "tool_calls": [
                            {"index": 0, "function": {"name": "f", "arguments": "{}"}}
                        ],
                    }
                }
            ]
        },
        {
            "choices": [],
            "usage": {
                "prompt_tokens": 3,
                "completion_tokens": 2,
                "prompt_tokens_details": {"cached_tokens": 1},
                "completion_tokens_details": {"reasoning_tokens": 1},
                "cost": 0.001,
            },
        },
    ],
    "openai_responses": [
        {"type": "response.output_text.delta", "delta": "hi"},
        {
            "type": "response.completed",
            "response": {
                "usage": {
                    "input_tokens": 3,
                    "output_tokens": 2,
                    "input_tokens_details": {"cached_tokens": 1},
                    "output_tokens_details": {"reasoning_tokens": 1},
                },
                "output": [{"content": [{"text": "hi"}]}],
            },
        },
    ],
    "ollama": [
        {
            "message": {"content": "hi", "thinking": "hm"},
            "response": "hi",
            "done": False,
        },
        {"done": True, "prompt_eval_count": 3, "eval_count": 2},
    ],
    "bedrock_converse": [
        {"contentBlockDelta": {"delta": {"text": "hi", "toolUse": {"input": "{}"}}}},
        {"metadata": {"usage": {"inputTokens": 3, "outputTokens": 2}}},
    ],
}
"""Events and buffered bodies of every API the meters read, for mutations."""

RESPONSE_EVENTS = [event for events in RESPONSES_BY_API.values() for event in events]
RESPONSE_API_OF_PATH = {
    "/v1/chat/completions": "openai_chat",
    "/v1/messages": "anthropic_messages",
    "/v1/responses": "openai_responses",
    "/api/chat": "ollama",
    "/api/generate": "ollama",
}

LLM_PATHS = [
    *REQUESTS,
    "/v1/chat/completions?beta=true",
    "/chat/completions",
    "/responses",
]
OTHER_PATHS = ["/v1/models", "/v1/messages/count_tokens", "/", "/v1/embeddings"]
CONTENT_TYPES = [
    "application/json",
    "text/event-stream",
    "text/event-stream; charset=utf-8",
    "application/x-ndjson",
    "application/vnd.amazon.eventstream",
    "text/plain",
    "",
]
ENCODINGS = ["", "identity", "gzip", "deflate", "br", "zstd", "x-unknown"]


def deep_body(depth: int) -> bytes:
    """Return a valid chat request whose `metadata` is `depth` nested lists."""
    nested = b"[" * depth + b"]" * depth
    return (
        b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],'
        b'"metadata":' + nested + b"}"
    )


def request_body_bytes(path: str | None) -> st.SearchStrategy[bytes]:
    """Generate request bodies: valid, mutated, any JSON, any bytes, deep nesting."""
    template = REQUESTS.get(
        (path or "").partition("?")[0], REQUESTS["/v1/chat/completions"]
    )
    return st.one_of(
        st.just(json.dumps(template).encode()),
        mutated(template).map(lambda doc: json.dumps(doc).encode()),
        json_values.map(lambda doc: json.dumps(doc).encode()),
        st.binary(max_size=64),
        st.sampled_from([b"", b"{", b'{"model":', b"\xff\xfe", b'{"a":"\\ud800"}']),
        st.sampled_from([900, 5_000, 200_000]).map(deep_body),
    )


def sse(documents: list[Any]) -> bytes:
    return (
        b"".join(
            b"event: e\ndata: " + json.dumps(doc).encode() + b"\n\n"
            for doc in documents
        )
        + b"data: [DONE]\n\n"
    )


def ndjson(documents: list[Any]) -> bytes:
    return b"".join(json.dumps(doc).encode() + b"\n" for doc in documents)


def event_stream(documents: list[Any]) -> bytes:
    return b"".join(
        encode_event_stream("message", json.dumps(doc).encode()) for doc in documents
    )


response_documents = st.lists(
    st.sampled_from(RESPONSE_EVENTS).flatmap(lambda template: mutated(template)),
    min_size=1,
    max_size=4,
)
response_body_bytes = st.one_of(
    response_documents.map(lambda docs: json.dumps(docs[0]).encode()),
    response_documents.map(sse),
    response_documents.map(ndjson),
    response_documents.map(event_stream),
    st.binary(max_size=64),
    st.sampled_from([10, 5_000, 200_000]).map(
        lambda depth: b"data: " + b"[" * depth + b"\n\n"
    ),
)


def _metadata_text(fields: dict[str, str]) -> str:
    """Format `lynkr` filter metadata as protobuf text, the form attempt.py reads."""
    entries = " ".join(
        f'fields {{ key: "{key}" value {{ string_value: "{value}" }} }}'
        for key, value in fields.items()
    )
    return f'filter_metadata {{ key: "lynkr" value {{ {entries} }} }}'


def _attributes(upstream: str, tier: str, api: str) -> dict[str, struct_pb2.Struct]:
    """Return the attributes Envoy sends to the ext_proc of a fallback attempt."""
    host = _metadata_text({"upstream": upstream})
    route = _metadata_text({"tier": tier, "client_api": api})
    fields = {
        "xds.upstream_host_metadata": struct_pb2.Value(string_value=host),
        "xds.route_metadata": struct_pb2.Value(string_value=route),
    }
    return {"envoy.filters.http.ext_proc": struct_pb2.Struct(fields=fields)}


header_values = st.text(max_size=12) | st.sampled_from(
    ["", "t1", "o1", "c-42", "REASONING", "0", "999999999999"]
)
AUTH_HEADERS = [
    {"x-api-key": cases.secret("vk-a")},
    {"authorization": "Bearer " + cases.secret("vk-a")},
    {"lynkr-virtual-key": cases.secret("vk-a")},
    {"x-api-key": "not-a-key"},
    {},
]


@st.composite
def request_headers_messages(
    draw: st.DrawFn, path: str | None = None
) -> ext_proc.ProcessingRequest:
    path = path or draw(st.sampled_from(LLM_PATHS + OTHER_PATHS) | st.text(max_size=10))
    headers = dict(draw(st.sampled_from(AUTH_HEADERS)))
    extra = draw(
        st.dictionaries(
            st.sampled_from(
                [
                    "lynkr-team-id",
                    "lynkr-org-id",
                    "lynkr-customer-id",
                    "lynkr-tier",
                    "x-lynkr-upstream",
                    "content-length",
                    "x-request-id",
                    "accept-encoding",
                ]
            ),
            header_values,
            max_size=3,
        )
    )
    headers.update(extra)
    method = draw(st.sampled_from(["POST", "POST", "GET", "PUT"]))
    message = request_headers(
        path, headers, method=method, end_of_stream=draw(st.booleans())
    )
    if draw(st.integers(0, 9)) == 0:
        upstream = draw(st.sampled_from(["openai", "anthropic", "nowhere"]))
        tier = draw(st.sampled_from(["COMPLEX", "SIMPLE", "NONE"]))
        api = draw(st.sampled_from(["openai_chat", "anthropic_messages", "bogus"]))
        for name, value in _attributes(upstream, tier, api).items():
            message.attributes[name].CopyFrom(value)
    return message


@st.composite
def request_body_messages(
    draw: st.DrawFn, path: str | None = None
) -> ext_proc.ProcessingRequest:
    body = draw(request_body_bytes(path))
    return request_body(body, end_of_stream=draw(st.booleans()))


@st.composite
def response_headers_messages(draw: st.DrawFn) -> ext_proc.ProcessingRequest:
    status = draw(
        st.sampled_from(
            ["200", "200", "400", "429", "500", "", "abc", "99999999999999999999"]
        )
    )
    extra = {"content-encoding": draw(st.sampled_from(ENCODINGS))}
    if draw(st.booleans()):
        extra["x-lynkr-served-by"] = draw(
            st.sampled_from(["openai", "anthropic", "nowhere"])
        )
    message = response_headers(
        200,
        draw(st.sampled_from(CONTENT_TYPES)),
        end_of_stream=draw(st.booleans()),
        **extra,
    )
    message.response_headers.headers.headers[0].raw_value = status.encode()
    return message


@st.composite
def response_body_messages(draw: st.DrawFn) -> ext_proc.ProcessingRequest:
    return response_body(draw(response_body_bytes), end_of_stream=draw(st.booleans()))


@st.composite
def trailers_messages(draw: st.DrawFn) -> ext_proc.ProcessingRequest:
    kind = draw(st.sampled_from(["request_trailers", "response_trailers"]))
    return ext_proc.ProcessingRequest(**{kind: ext_proc.HttpTrailers()})


any_message = st.one_of(
    request_headers_messages(),
    request_body_messages(),
    response_headers_messages(),
    response_body_messages(),
    trailers_messages(),
    st.just(ext_proc.ProcessingRequest()),
)


def _pieces(draw: st.DrawFn, data: bytes) -> list[bytes]:
    """Cut `data` into one to three pieces, as Envoy may stream a body."""
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=2)))
    edges = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


@st.composite
def plausible_response(
    draw: st.DrawFn, path: str
) -> tuple[ext_proc.ProcessingRequest, bytes]:
    """Generate response headers and a body in the path's API, events mutated."""
    templates = RESPONSES_BY_API[RESPONSE_API_OF_PATH[path]]
    documents = draw(
        st.lists(st.sampled_from(templates).flatmap(mutated), min_size=1, max_size=4)
    )
    streamed = (
        "application/x-ndjson" if path.startswith("/api/") else "text/event-stream"
    )
    content_type = draw(st.sampled_from([streamed, "application/json"]))
    if content_type == "application/json":
        body = json.dumps(documents[-1]).encode()
    else:
        body = ndjson(documents) if path.startswith("/api/") else sse(documents)
    status = draw(st.sampled_from([200, 200, 200, 400, 500]))
    return response_headers(status, content_type), body


@st.composite
def lifecycle(draw: st.DrawFn) -> list[ext_proc.ProcessingRequest]:
    """Generate Envoy's messages for one request, with random content and edits.

    Four in five requests carry a valid key and a valid or mutated body, so
    that most examples reach the response phase. The rest take any headers
    and body.
    """
    path = draw(st.sampled_from(list(REQUESTS)))
    template = REQUESTS[path]
    plausible = draw(st.integers(0, 4)) > 0
    if plausible:
        auth = draw(st.sampled_from(AUTH_HEADERS[:3]))
        headers = request_headers(path, {**auth, "x-request-id": draw(st.uuids()).hex})
        body = draw(st.just(template) | mutated(template)).copy()
        body["model"] = "claude-sonnet-4" if path == "/v1/messages" else "gpt-4o-mini"
        body_bytes = json.dumps(body).encode()
    else:
        headers = draw(request_headers_messages(path))
        body_bytes = draw(request_body_bytes(path))
    body_chunks = _pieces(draw, body_bytes)
    if plausible:
        answer, answer_bytes = draw(plausible_response(path))
    else:
        answer = draw(response_headers_messages())
        answer_bytes = draw(response_body_bytes)
    answer_chunks = _pieces(draw, answer_bytes)
    messages = [
        headers,
        *(
            request_body(chunk, end_of_stream=i == len(body_chunks) - 1)
            for i, chunk in enumerate(body_chunks)
        ),
        answer,
        *(
            response_body(chunk, end_of_stream=i == len(answer_chunks) - 1)
            for i, chunk in enumerate(answer_chunks)
        ),
    ]
    return _edit_order(draw, messages)


def _edit_order(
    draw: st.DrawFn, messages: list[ext_proc.ProcessingRequest]
) -> list[ext_proc.ProcessingRequest]:
    """Drop, repeat, swap or insert up to two messages."""
    for _ in range(draw(st.integers(0, 2))):
        edit = draw(
            st.sampled_from(["none", "none", "drop", "repeat", "swap", "insert"])
        )
        at = draw(st.integers(0, len(messages) - 1))
        if edit == "drop" and len(messages) > 1:
            del messages[at]
        elif edit == "repeat":
            messages.insert(at, messages[at])
        elif edit == "swap" and at + 1 < len(messages):
            messages[at], messages[at + 1] = messages[at + 1], messages[at]
        elif edit == "insert":
            messages.insert(at, draw(any_message))
    return messages


# -- properties of the stream ------------------------------------------------


any_order = st.one_of(
    st.lists(any_message, min_size=1, max_size=8),
    # Half of the sequences open like a request, so that later messages
    # meet the states after the headers too.
    st.builds(
        lambda first, rest: [first, *rest],
        st.sampled_from(list(REQUESTS)).flatmap(request_headers_messages),
        st.lists(any_message, max_size=7),
    ),
)


@STREAM_SETTINGS
@given(messages=any_order)
def test_any_message_order_never_fails_stream(harness, messages):
    """Messages in any order get replies or FAILED_PRECONDITION, never INTERNAL."""
    holds = harness.holds()
    outcomes = run_sequence(harness, messages)
    note_event(
        f"last reply: {outcomes[-1] if outcomes else '-'}, replies: {len(outcomes)}"
    )
    check_still_serving(harness, holds)


@STREAM_SETTINGS
@given(messages=lifecycle())
def test_request_lifecycle_never_fails_stream(harness, messages):
    """Envoy's order with random content and a few reorderings never fails."""
    holds = harness.holds()
    outcomes = run_sequence(harness, messages)
    note_event(
        f"last reply: {outcomes[-1] if outcomes else '-'}, replies: {len(outcomes)}"
    )
    check_still_serving(harness, holds)


# -- malformed inputs the properties found -------------------------------------
#
# Each case is a fixed example of a failure class, so that a failure here
# names its input without a Hypothesis run.


MALFORMED_REQUESTS = [
    pytest.param("/v1/chat/completions", deep_body(200_000), id="nesting-200000"),
    pytest.param("/v1/chat/completions", deep_body(900), id="nesting-900"),
    pytest.param(
        "/v1/chat/completions",
        {
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": "hi", "tool_calls": 5}],
        },
        id="chat-tool_calls-number",
    ),
    pytest.param(
        "/v1/chat/completions",
        {
            "model": "gpt-4o-mini",
            "messages": [
                {"role": "assistant", "tool_calls": [{"function": "f"}]},
            ],
        },
        id="chat-tool_call-function-string",
    ),
    pytest.param(
        "/v1/chat/completions",
        {
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"function": "f"}],
        },
        id="chat-tool-function-string",
    ),
    pytest.param(
        "/v1/chat/completions",
        {
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": "hi"}],
            "tools": 5,
        },
        id="chat-tools-number",
    ),
    pytest.param(
        "/api/chat",
        {
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": "hi", "images": 5}],
        },
        id="ollama-images-number",
    ),
    pytest.param(
        "/v1/chat/completions",
        b'{"model":"some-client-model",'
        b'"messages":[{"role":"user","content":"\\ud800"}]}',
        id="lone-surrogate-rewritten",
    ),
]


@pytest.mark.parametrize(("path", "body"), MALFORMED_REQUESTS)
def test_malformed_request_gets_400(harness, path, body):
    """A request body the service cannot use gets a JSON 400, not a failed stream."""
    with BoundedStream(harness.channel) as stream:
        stream.send(request_headers(path, {"x-api-key": cases.secret("vk-b")}))
        reply = stream.send(request_body(body))
    if reply.WhichOneof("response") == "request_body":
        # Accepted as valid: then it must have been routed.
        routing = headers_of(reply.request_body.response.header_mutation)
        assert routing["x-lynkr-upstream"]
        return
    status, _, error = immediate_json(reply)
    assert status == 400
    assert error["error"]["type"] == "invalid_request_error"
    assert "Recursion" not in error["error"]["message"]


MALFORMED_RESPONSES = [
    pytest.param(
        "/v1/messages",
        "text/event-stream",
        b'data: {"type":"message_start","message":"x"}\n\n',
        id="messages-message-string",
    ),
    pytest.param(
        "/v1/messages",
        "text/event-stream",
        b'data: {"type":"content_block_delta","delta":"x"}\n\n',
        id="messages-delta-string",
    ),
    pytest.param(
        "/v1/chat/completions",
        "text/event-stream",
        b'data: {"choices":5}\n\n',
        id="chat-choices-number",
    ),
    pytest.param(
        "/v1/chat/completions",
        "text/event-stream",
        b'data: {"choices":[{"delta":{"tool_calls":5}}]}\n\n',
        id="chat-tool_calls-number",
    ),
    pytest.param(
        "/v1/chat/completions",
        "text/event-stream",
        b'data: {"choices":[],'
        b'"usage":{"prompt_tokens":1,"prompt_tokens_details":"x"}}\n\n',
        id="chat-usage-details-string",
    ),
    pytest.param(
        "/v1/chat/completions",
        "application/json",
        b'{"choices":[{"message":{"tool_calls":[{"function":"f"}]}}]}',
        id="chat-json-function-string",
    ),
    pytest.param(
        "/v1/responses",
        "text/event-stream",
        b'data: {"type":"response.completed","response":"x"}\n\n',
        id="responses-response-string",
    ),
    pytest.param(
        "/v1/chat/completions",
        "text/event-stream",
        b"data: " + b"[" * 100_000 + b"\n\n",
        id="event-nesting-100000",
    ),
    pytest.param(
        "/v1/chat/completions",
        "application/json",
        b"[" * 100_000 + b"]" * 100_000,
        id="json-nesting-100000",
    ),
    pytest.param(
        "/v1/chat/completions",
        "application/json",
        b'{"usage":{"prompt_tokens":1000000000000000000000000000000,'
        b'"completion_tokens":1}}',
        id="usage-10e30-tokens",
    ),
]


@pytest.mark.parametrize(("path", "content_type", "body"), MALFORMED_RESPONSES)
def test_malformed_response_keeps_stream(harness, path, content_type, body):
    """A malformed upstream response is forwarded and metered, never failing."""
    request = copy.deepcopy(REQUESTS[path])
    request["model"] = "gpt-4o-mini" if path != "/v1/messages" else "claude-haiku-4-5"
    holds = harness.holds()
    with BoundedStream(harness.channel) as stream:
        stream.send(request_headers(path, {"x-api-key": cases.secret("vk-b")}))
        routed = stream.send(request_body(request))
        assert routed.WhichOneof("response") == "request_body", routed
        stream.send(response_headers(200, content_type))
        reply = stream.send(response_body(body, end_of_stream=True))
    assert reply.WhichOneof("response") == "response_body"
    harness.service.drain()
    assert harness.holds() == holds, "the request's budget hold was not settled"


def test_attempt_invalid_json_gets_400(harness):
    """A fallback attempt whose body is not JSON gets an ImmediateResponse 400."""
    first = request_headers("/v1/messages", {})
    for name, value in _attributes("openai", "COMPLEX", "anthropic_messages").items():
        first.attributes[name].CopyFrom(value)
    with BoundedStream(harness.channel) as stream:
        stream.send(first)
        reply = stream.send(request_body(b"{not json"))
    assert reply.WhichOneof("response") == "immediate_response"
    status, _, error = immediate_json(reply)
    assert status == 400
    assert "JSON" in error["error"]["message"]


# -- framing: SSE -------------------------------------------------------------

sse_text = st.text(
    st.characters(blacklist_categories=["Cs"], blacklist_characters="\r\n\x00"),
    max_size=20,
)


@st.composite
def sse_streams(draw: st.DrawFn) -> tuple[bytes, list[Event]]:
    """Generate an SSE stream and the events a WHATWG decoder dispatches from it."""
    out = bytearray(b"\xef\xbb\xbf" if draw(st.booleans()) else b"")

    def newline() -> bytes:
        # An LF right after a CR ending would join it into one CRLF ending.
        choices = [b"\r", b"\r\n"] if out.endswith(b"\r") else [b"\n", b"\r", b"\r\n"]
        return draw(st.sampled_from(choices))

    expected: list[Event] = []
    last_id = ""
    for _ in range(draw(st.integers(0, 5))):
        data: list[str] = []
        kind = ""
        retry = None
        for _ in range(draw(st.integers(0, 4))):
            field = draw(
                st.sampled_from(["data", "data", "event", "id", "retry", ":", "other"])
            )
            value = draw(sse_text)
            if field == "retry":
                value = str(draw(st.integers(0, 10**6)))
                retry = int(value)
            elif field == "data":
                data.append(value)
            elif field == "event":
                kind = value
            elif field == "id":
                last_id = value
            out += (
                f"{field} {value}" if field == ":" else f"{field}: {value}"
            ).encode()
            out += newline()
        out += newline()
        if data:
            expected.append(
                Event(kind or "message", "\n".join(data), last_id or None, retry)
            )
    return bytes(out), expected


def _cuts(size: int) -> st.SearchStrategy[list[int]]:
    return st.lists(st.integers(0, size), max_size=6).map(sorted)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    edges = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


def feed_sse(
    chunks: list[bytes], **options: Any
) -> tuple[list[Event], bytes, SSEDecoder]:
    decoder = SSEDecoder(**options)
    events: list[Event] = []
    raw = bytearray()
    for chunk in chunks:
        for event, block in decoder.feed_blocks(chunk):
            raw += block
            if event is not None:
                events.append(event)
    raw += decoder.close()
    return events, bytes(raw), decoder


@FRAMING_SETTINGS
@given(stream=sse_streams(), data=st.data())
def test_sse_events_match_spec_model(stream, data):
    """A stream decodes to the events the WHATWG algorithm dispatches, cut anyhow."""
    body, expected = stream
    events, _, _ = feed_sse(split(body, data.draw(_cuts(len(body)))))
    assert events == expected


@FRAMING_SETTINGS
@given(body=st.binary(max_size=300) | sse_streams().map(lambda s: s[0]), data=st.data())
def test_sse_split_matches_whole(body, data):
    """Any bytes give the same events in any chunking, and raw blocks rebuild them."""
    whole, _, _ = feed_sse([body])
    pieces, raw, _ = feed_sse(split(body, data.draw(_cuts(len(body)))), keep_raw=True)
    assert pieces == whole
    assert raw == body


@pytest.mark.parametrize("cr_split", [b"data: a\r", b"data: a\r\n"])
def test_sse_every_cut_matches_whole(cr_split):
    """Every two-piece cut of a CR, LF and CRLF stream decodes like the whole."""
    body = (
        b"\xef\xbb\xbf: c\r\n"
        + cr_split
        + b"\ndata: \xe2\x82\xac\r\rid: 7\nevent: x\ndata: b\n\n"
    )
    whole, _, _ = feed_sse([body])
    for cut in range(len(body) + 1):
        events, raw, _ = feed_sse([body[:cut], body[cut:]], keep_raw=True)
        assert events == whole, f"cut at {cut}"
        assert raw == body, f"cut at {cut}"


@FRAMING_SETTINGS
@given(size=st.integers(65, 400), data=st.data())
def test_sse_oversized_event_dropped(size, data):
    """An event above max_event_bytes is dropped and counted, and the next decodes."""
    body = b"data: " + b"x" * size + b"\n\ndata: after\n\n"
    events, _, decoder = feed_sse(
        split(body, data.draw(_cuts(len(body)))), max_event_bytes=64
    )
    assert events == [Event(data="after")]
    assert decoder.dropped_events == 1


# -- framing: NDJSON and AWS event stream --------------------------------------


def feed_ndjson(chunks: list[bytes], **options: Any) -> list[Event | None]:
    framer = NDJSONFramer(**options)
    events = [event for chunk in chunks for event, _ in framer.feed_blocks(chunk)]
    return [*events, framer.pending_event()]


@FRAMING_SETTINGS
@given(body=st.binary(max_size=200) | response_documents.map(ndjson), data=st.data())
def test_ndjson_split_matches_whole(body, data):
    """NDJSON lines give the same events in any chunking, oversized lines included."""
    chunks = split(body, data.draw(_cuts(len(body))))
    whole = feed_ndjson([body], max_event_bytes=40)
    assert feed_ndjson(chunks, max_event_bytes=40) == whole


def test_ndjson_oversized_line_dropped(caplog):
    """A line above the limit is dropped with a warning, and the next line decodes."""
    body = b'{"a":"' + b"x" * 100 + b'"}\n{"done":true}\n'
    with caplog.at_level(logging.WARNING, logger="lynkr_extproc.framing"):
        events = [e for e in feed_ndjson([body], max_event_bytes=40) if e is not None]
    assert events == [Event(data='{"done":true}')]
    assert "ndjson line dropped: larger than 40 bytes" in caplog.text


def feed_event_stream(
    chunks: list[bytes], **options: Any
) -> tuple[list[tuple[Event | None, bytes]], EventStreamFramer]:
    framer = EventStreamFramer(**options)
    blocks = [block for chunk in chunks for block in framer.feed_blocks(chunk)]
    return blocks, framer


def _crc_valid(message: bytes) -> bool:
    if len(message) < 16:
        return False
    (total, _, prelude_crc) = struct.unpack(">III", message[:12])
    (crc,) = struct.unpack(">I", message[-4:])
    return (
        total == len(message)
        and zlib.crc32(message[:8]) == prelude_crc
        and zlib.crc32(message[:-4]) == crc
    )


@FRAMING_SETTINGS
@given(documents=response_documents, data=st.data())
def test_event_stream_split_matches_whole(documents, data):
    """Valid frames give the same events in any chunking."""
    body = event_stream(documents)
    whole, _ = feed_event_stream([body])
    pieces, framer = feed_event_stream(split(body, data.draw(_cuts(len(body)))))
    assert [event for event, _ in pieces] == [event for event, _ in whole]
    assert len(whole) == len(documents)
    assert framer.bad_messages == 0


@FRAMING_SETTINGS
@given(documents=response_documents, data=st.data())
def test_corrupt_frames_never_yield_events(documents, data):
    """Flipped bytes never raise nor yield an event from a frame that fails its CRC."""
    body = bytearray(event_stream(documents))
    for position in data.draw(
        st.lists(st.integers(0, len(body) - 1), min_size=1, max_size=4)
    ):
        body[position] ^= data.draw(st.integers(1, 255))
    blocks, _ = feed_event_stream(split(bytes(body), data.draw(_cuts(len(body)))))
    for event, raw in blocks:
        if event is not None:
            assert _crc_valid(raw), f"event {event!r} from a frame that fails its CRC"


def _frame(
    headers: bytes, payload: bytes, *, headers_length: int | None = None
) -> bytes:
    """Return an event stream message with valid CRCs around any headers bytes."""
    declared = len(headers) if headers_length is None else headers_length
    total = 12 + len(headers) + len(payload) + 4
    prelude = struct.pack(">II", total, declared)
    prelude += struct.pack(">I", zlib.crc32(prelude))
    message = prelude + headers + payload
    return message + struct.pack(">I", zlib.crc32(message))


@FRAMING_SETTINGS
@example(headers=b"\x05ab", payload=b"{}")
@example(headers=b"\x02ab\x07\x00", payload=b"{}")
@given(headers=st.binary(max_size=24), payload=st.binary(max_size=24))
def test_event_stream_malformed_headers_never_raise(headers, payload):
    """A frame with valid CRCs but malformed headers never raises."""
    blocks, _ = feed_event_stream([_frame(headers, payload)])
    assert len(blocks) == 1


def test_event_stream_headers_length_past_frame():
    """A headers length larger than the frame is dropped, never raised."""
    blocks, _ = feed_event_stream([_frame(b"abcd", b"", headers_length=100)])
    assert len(blocks) == 1


# -- framing: the whole response reader ---------------------------------------


def _fixture_api(name: str) -> Any:
    """Return the API format a recorded response is written in."""
    folder, stem = name.split("/")
    if folder == "anthropic":
        return anthropic_messages
    if folder == "openai":
        return openai_responses if stem.startswith("responses") else openai_chat
    if folder == "ollama":
        if stem == "openai_chat_completion":
            return openai_chat
        return ollama.generate if stem.startswith("generate") else ollama.chat
    if folder == "bedrock":
        return bedrock_converse if stem.startswith("converse") else anthropic_messages
    return openai_chat


RECORDED = sorted(
    str(path.relative_to(FIXTURES).with_suffix(""))
    for path in FIXTURES.glob("*/*.body")
)
TRANSLATED_CLIENT = {
    "openai_chat": ["anthropic_messages", "openai_responses"],
    "anthropic_messages": ["openai_chat"],
}
"""Client APIs that a response of each upstream API is translated into."""


def read_response(
    upstream_api: Any,
    client_api: Any,
    headers: dict[str, str],
    chunks: list[bytes],
    *,
    strip_usage: bool = False,
) -> tuple[Any, bytes | None, int | None]:
    """Read chunks with a ResponseReader, returning (observed, client bytes, cost)."""
    translation = translation_for(client_api.name, upstream_api.name)
    if translation is not None:
        translation.request(REQUESTS_BY_API[client_api.name], model="m")
    reader = ResponseReader(
        upstream_api, client_api, translation, strip_usage=strip_usage, request_id="p"
    )
    reader.on_headers({":status": "200", **headers})
    out: list[bytes] = []
    changed = False
    for index, chunk in enumerate(chunks):
        replaced = reader.on_body(chunk, end=index == len(chunks) - 1)
        if replaced is not None:
            changed = True
            out.append(replaced)
    flags: set[str] = set()
    observed = (*reader.observed(flags), frozenset(flags))
    # Translated chat chunks carry the wall-clock second in "created".
    client_bytes = (
        re.sub(rb'"created":\d+', b'"created":0', b"".join(out)) if changed else None
    )
    return observed, client_bytes, reader.provider_cost()


REQUESTS_BY_API = {
    "openai_chat": REQUESTS["/v1/chat/completions"],
    "anthropic_messages": REQUESTS["/v1/messages"],
    "openai_responses": REQUESTS["/v1/responses"],
}

READER_CASES = [
    pytest.param(name, client, id=f"{name}->{client or 'same'}")
    for name in RECORDED
    for client in [None, *TRANSLATED_CLIENT.get(_fixture_api(name).name, [])]
]


@pytest.mark.parametrize(("name", "client"), READER_CASES)
def test_reader_every_cut_matches_whole(name, client):
    """A recorded response cut at any byte gives the same usage, cost and bytes."""
    meta = json.loads((FIXTURES / f"{name}.json").read_text())
    body = (FIXTURES / f"{name}.body").read_bytes()
    upstream_api = _fixture_api(name)
    client_api = BY_NAME[client] if client else upstream_api
    headers = meta["headers"]
    whole = read_response(upstream_api, client_api, headers, [body])
    if meta["usage"] is None:
        # Recorded without usage (llama.cpp streams send none): nothing to read.
        assert whole[0][0] is None, f"{name}: usage read from a body that has none"
    else:
        assert whole[0][0] is not None, f"{name}: no usage read from the whole body"
    for cut in range(len(body) + 1):
        pieces = read_response(
            upstream_api, client_api, headers, [body[:cut], body[cut:]]
        )
        assert pieces == whole, f"{name}: cut at byte {cut}"


@FRAMING_SETTINGS
@given(
    name=st.sampled_from(RECORDED),
    strip=st.booleans(),
    data=st.data(),
)
def test_reader_random_cuts_match_whole(name, strip, data):
    """A recorded response in up to seven random pieces reads like the whole."""
    meta = json.loads((FIXTURES / f"{name}.json").read_text())
    body = (FIXTURES / f"{name}.body").read_bytes()
    api = _fixture_api(name)
    whole = read_response(api, api, meta["headers"], [body], strip_usage=strip)
    pieces = read_response(
        api,
        api,
        meta["headers"],
        split(body, data.draw(_cuts(len(body)))),
        strip_usage=strip,
    )
    assert pieces == whole


READER_APIS = [
    openai_chat,
    anthropic_messages,
    openai_responses,
    ollama.chat,
    ollama.generate,
    bedrock_converse,
]


@FRAMING_SETTINGS
@given(
    upstream_api=st.sampled_from(READER_APIS),
    content_type=st.sampled_from(CONTENT_TYPES),
    body=response_body_bytes,
    data=st.data(),
)
def test_reader_malformed_body_never_raises(upstream_api, content_type, body, data):
    """Mutated events, random bytes and deep nesting are skipped, never raised."""
    clients = [
        upstream_api,
        *(BY_NAME[name] for name in TRANSLATED_CLIENT.get(upstream_api.name, [])),
    ]
    client_api = data.draw(st.sampled_from(clients))
    chunks = split(body, data.draw(_cuts(len(body))))
    read_response(upstream_api, client_api, {"content-type": content_type}, chunks)


# -- size limits -------------------------------------------------------------


def test_declared_length_over_limit_gets_413(harness):
    """A content-length above server.max_request_bytes gets a JSON 413 at once."""
    headers = {
        "x-api-key": cases.secret("vk-b"),
        "content-length": str(MAX_REQUEST_BYTES + 1),
    }
    with BoundedStream(harness.channel) as stream:
        reply = stream.send(request_headers("/v1/chat/completions", headers))
    status, response_headers_sent, error = immediate_json(reply)
    assert status == 413
    assert response_headers_sent["content-type"] == b"application/json"
    assert error["error"]["type"] == "request_too_large"
    assert f"larger than {MAX_REQUEST_BYTES} bytes" in error["error"]["message"]


def test_chunked_body_over_limit_gets_413(harness):
    """A body passing the limit over several chunks gets a JSON 413 at that chunk."""
    half = b" " * (MAX_REQUEST_BYTES // 2)
    with BoundedStream(harness.channel) as stream:
        stream.send(
            request_headers("/v1/messages", {"x-api-key": cases.secret("vk-b")})
        )
        first = stream.send(request_body(half, end_of_stream=False))
        second = stream.send(request_body(half + b" ", end_of_stream=False))
    assert first.WhichOneof("response") == "request_body"
    status, _, error = immediate_json(second)
    assert status == 413
    assert error["type"] == "error"
    assert error["error"]["type"] == "request_too_large"


def test_attempt_body_over_limit_gets_413(harness):
    """A fallback attempt's body above server.max_request_bytes gets a 413."""
    first = request_headers("/v1/messages", {})
    for name, value in _attributes("openai", "COMPLEX", "anthropic_messages").items():
        first.attributes[name].CopyFrom(value)
    body = json.dumps(
        {**REQUESTS["/v1/messages"], "metadata": {"pad": "x" * MAX_REQUEST_BYTES}}
    )
    with BoundedStream(harness.channel) as stream:
        stream.send(first)
        reply = stream.send(request_body(body.encode()))
    assert reply.WhichOneof("response") == "immediate_response"
    assert reply.immediate_response.status.code == 413


def test_grpc_message_over_limit_rejected(harness):
    """A message above the gRPC limit fails with RESOURCE_EXHAUSTED, not the server."""
    holds = harness.holds()
    with BoundedStream(harness.channel) as stream:
        stream.send(
            request_headers("/v1/messages", {"x-api-key": cases.secret("vk-b")})
        )
        with pytest.raises(grpc.RpcError) as caught:
            stream.send(request_body(b" " * (MAX_MESSAGE_BYTES + 1)))
    assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    check_still_serving(harness, holds)


def test_sse_event_limit_in_reader(caplog):
    """An SSE event above 8 MiB is dropped with a warning, and later usage is read."""
    big = (
        b'data: {"choices":[{"delta":{"content":"'
        + b"x" * DEFAULT_MAX_EVENT_BYTES
        + b'"}}]}\n\n'
    )
    usage = (
        b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}\n\n'
    )
    with caplog.at_level(logging.WARNING, logger="lynkr_extproc.sse"):
        observed, _, _ = read_response(
            openai_chat,
            openai_chat,
            {"content-type": "text/event-stream"},
            [big, usage],
        )
    assert observed[0] is not None
    assert observed[0].output_tokens == 2
    assert (
        f"sse event dropped: larger than {DEFAULT_MAX_EVENT_BYTES} bytes" in caplog.text
    )


def test_oversized_event_forwarded_when_stripping():
    """With usage stripping, an oversized event is forwarded, not buffered whole."""
    reader = ResponseReader(
        openai_chat, openai_chat, None, strip_usage=True, request_id="p"
    )
    reader.on_headers({":status": "200", "content-type": "text/event-stream"})
    chunk = b"x" * (1024 * 1024)
    sent = received = 0
    data = b"data: "
    for _ in range(3 * DEFAULT_MAX_EVENT_BYTES // len(chunk)):
        received += len(data)
        sent += len(reader.on_body(data, end=False) or b"")
        data = chunk
    held = received - sent
    assert held <= DEFAULT_MAX_EVENT_BYTES + len(chunk), (
        f"{held} bytes of one event held back"
    )


def test_event_stream_frame_limit(caplog):
    """A frame declared above the limit is dropped with a warning, not buffered."""
    frame = encode_event_stream("metadata", b"{}")
    too_long = struct.pack(">II", DEFAULT_MAX_EVENT_BYTES + 1, 0)
    too_long += struct.pack(">I", zlib.crc32(too_long))
    with caplog.at_level(logging.WARNING, logger="lynkr_extproc.framing"):
        blocks, framer = feed_event_stream([too_long + b"\0" * 64])
    assert blocks == [(None, too_long + b"\0" * 64)]
    assert framer.bad_messages == 1
    assert "event stream prelude invalid" in caplog.text
    following, _ = feed_event_stream([frame])
    assert following[0][0] is not None


def test_buffered_json_over_limit_flagged(caplog):
    """A buffered JSON response above 64 MiB is flagged and logged, not parsed."""
    body = (
        b'{"usage":{"prompt_tokens":3,"completion_tokens":2},"pad":"'
        + b"x" * MAX_RESPONSE_JSON_BYTES
        + b'"}'
    )
    half = len(body) // 2
    with caplog.at_level(logging.WARNING, logger="lynkr_extproc.response_reader"):
        observed, _, _ = read_response(
            openai_chat,
            openai_chat,
            {"content-type": "application/json"},
            [body[:half], body[half:]],
        )
    usage, finished, failed, _, flags = observed
    warnings = [r for r in caplog.records if r.name == "lynkr_extproc.response_reader"]
    assert usage is None
    assert finished is True
    assert failed is False
    assert flags, "the 64 MiB overflow left no flag on the spend record"
    assert warnings, "the 64 MiB overflow was not logged"


def test_gzip_bomb_decoded_in_bounded_memory():
    """A gzip body that expands to 256 MiB is decoded in bounded memory."""
    expanded = 256 * 1024 * 1024
    compressed = gzip.compress(b"\0" * expanded, compresslevel=9)
    reader = ResponseReader(
        openai_chat, openai_chat, None, strip_usage=False, request_id="p"
    )
    reader.on_headers(
        {
            ":status": "200",
            "content-type": "application/json",
            "content-encoding": "gzip",
        }
    )
    tracemalloc.start()
    try:
        reader.on_body(compressed, end=True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < MAX_RESPONSE_JSON_BYTES + 16 * 1024 * 1024, (
        f"peak {peak} bytes for a {len(compressed)}-byte body"
    )


def test_request_nesting_depth_gets_400(harness):
    """A 200,000-deep `[[[...]]]` body gets a JSON 400 that names the nesting."""
    with BoundedStream(harness.channel) as stream:
        stream.send(
            request_headers("/v1/chat/completions", {"x-api-key": cases.secret("vk-b")})
        )
        reply = stream.send(request_body(b"[" * 200_000 + b"]" * 200_000))
    status, _, error = immediate_json(reply)
    assert status == 400
    assert error["error"]["type"] == "invalid_request_error"
    assert "nest" in error["error"]["message"].lower()
