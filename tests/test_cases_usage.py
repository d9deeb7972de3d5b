"""Real-world usage and cost cases, each checked to the nano-dollar.

Costs are integer nano-dollars: $0.00000255 is 2550 nanos. Prices are USD
per million tokens, so a cost is the sum of tokens times price divided by
10**6, and these cases all come out whole.
"""

from __future__ import annotations

import json
from decimal import Decimal
from types import ModuleType
from typing import Any

import pytest

from lynkr_extproc import money
from lynkr_extproc.errors import ConfigError
from lynkr_extproc.formats import anthropic_messages, openai_chat, openai_responses
from lynkr_extproc.pricing import Price, Usage, load_price_table, parse_price
from lynkr_extproc.sse import Event, SSEDecoder

PRICES = load_price_table(
    {
        "gpt-4o-mini": {"input": "0.15", "cache_read": "0.075", "output": "0.60"},
        "gpt-4o": {"input": "2.50", "cache_read": "1.25", "output": "10.00"},
        "gpt-4o-2024-05-13": {"input": "5.00", "output": "15.00"},
        "claude-sonnet-4": {
            "input": "3.00",
            "cache_read": "0.30",
            "cache_write": "3.75",
            "output": "15.00",
        },
        "fw-model": {"input": "1.40", "cache_read": "0.26", "output": "4.40"},
        "reasoner-x": {"input": 30, "output": 180},
    },
    include_defaults=False,
)


def cost(model: str, usage: Usage) -> int:
    """Return the cost of `usage` on `model` in nano-dollars."""
    price = PRICES.lookup(model)
    assert price is not None, f"no price for {model!r} in the test table"
    return price.cost_nanos(usage)


def sse(payload: dict[str, Any], event: str | None = None) -> bytes:
    """Encode one SSE event whose data is `payload` as compact UTF-8 JSON."""
    data = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {data}\n\n".encode()


def run_meter(
    api: ModuleType, chunks: list[bytes], **options: int
) -> tuple[Any, SSEDecoder]:
    """Feed `chunks` through a decoder into a new meter and return both."""
    decoder = SSEDecoder(**options)
    meter = api.new_meter()
    for chunk in chunks:
        for event in decoder.feed(chunk):
            meter.feed(event)
    decoder.close()
    return meter, decoder


# Chat Completions streams: usage in a last chunk with empty choices

CHAT_STREAM_CHUNKS = [
    (
        b'data: {"choices":[{"index":0,"delta":{"content":"Hello"},'
        b'"finish_reason":null}]}\n\n'
    ),
    b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n',
    (
        b'data: {"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2,'
        b'"total_tokens":11}}\n\n'
    ),
    b"data: [DONE]\n\n",
]


def test_chat_stream_usage_chunk() -> None:
    """The empty-choices usage chunk gives 9 in, 2 out: $0.00000255."""
    meter, _ = run_meter(openai_chat, CHAT_STREAM_CHUNKS)

    assert meter.usage == Usage(input_tokens=9, output_tokens=2)
    assert cost("gpt-4o-mini", meter.usage) == 2550
    assert meter.finished is True
    assert meter.failed is False


def test_chat_is_usage_only() -> None:
    """is_usage_only is true for the usage chunk and false for the others."""
    decoder = SSEDecoder()
    meter = openai_chat.new_meter()

    usage_only = [
        meter.is_usage_only(event)
        for chunk in CHAT_STREAM_CHUNKS
        for event in decoder.feed(chunk)
    ]

    assert usage_only == [False, False, True, False]


CHAT_CONTENT = sse(
    {"choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}]}
)
CHAT_FINISH = sse({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
CHAT_USAGE = sse(
    {
        "choices": [],
        "usage": {"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150},
    }
)
CHAT_DONE = b"data: [DONE]\n\n"


@pytest.mark.parametrize(
    "chunks",
    [
        pytest.param(
            [CHAT_CONTENT, CHAT_FINISH, CHAT_USAGE, CHAT_DONE], id="usage-own-chunk"
        ),
        pytest.param(
            [CHAT_CONTENT, CHAT_FINISH + CHAT_USAGE, CHAT_DONE],
            id="finish-and-usage-one-chunk",
        ),
    ],
)
def test_chat_usage_chunk_placement(chunks: list[bytes]) -> None:
    """120 in, 30 out costs $0.000036 wherever the usage chunk sits."""
    meter, _ = run_meter(openai_chat, chunks)

    assert meter.usage == Usage(input_tokens=120, output_tokens=30)
    assert cost("gpt-4o-mini", meter.usage) == 36_000


# Anthropic streams: message_delta usage is cumulative, never summed

ANTHROPIC_START = sse(
    {
        "type": "message_start",
        "message": {
            "model": "claude-sonnet-4",
            "usage": {
                "input_tokens": 9,
                "cache_read_input_tokens": 1,
                "cache_creation_input_tokens": 0,
                "output_tokens": 1,
            },
        },
    },
    event="message_start",
)


def anthropic_delta(output_tokens: int) -> bytes:
    return sse(
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn"},
            "usage": {
                "input_tokens": 9,
                "cache_read_input_tokens": 1,
                "cache_creation_input_tokens": 0,
                "output_tokens": output_tokens,
            },
        },
        event="message_delta",
    )


ANTHROPIC_STOP = sse({"type": "message_stop"}, event="message_stop")


def test_anthropic_delta_replaces_start() -> None:
    """message_delta replaces message_start: $0.0002673, not the summed $0.0003096."""
    meter, _ = run_meter(
        anthropic_messages, [ANTHROPIC_START, anthropic_delta(16), ANTHROPIC_STOP]
    )

    assert meter.usage.input_tokens == 9
    assert meter.usage.cache_read_tokens == 1
    assert meter.usage.cache_write_tokens == 0
    assert meter.usage.output_tokens == 16
    assert cost("claude-sonnet-4", meter.usage) == 267_300
    assert meter.finished is True


def test_anthropic_second_delta_replaces_first() -> None:
    """A second message_delta with output 20 gives 20, not 36."""
    chunks = [ANTHROPIC_START, anthropic_delta(16), anthropic_delta(20), ANTHROPIC_STOP]

    meter, _ = run_meter(anthropic_messages, chunks)

    assert meter.usage.output_tokens == 20
    assert meter.usage.input_tokens == 9


# Responses streams: the terminal event carries the usage

RESPONSES_CREATED = sse(
    {
        "type": "response.created",
        "response": {"id": "resp_1", "status": "in_progress", "usage": None},
    },
    event="response.created",
)
RESPONSES_DELTA = sse(
    {"type": "response.output_text.delta", "item_id": "msg_1", "delta": "Once upon"},
    event="response.output_text.delta",
)


def test_responses_incomplete_usage() -> None:
    """response.incomplete carries 800 in, 256 out on gpt-4o: $0.00456."""
    incomplete = sse(
        {
            "type": "response.incomplete",
            "response": {
                "id": "resp_1",
                "status": "incomplete",
                "incomplete_details": {"reason": "max_output_tokens"},
                "usage": {
                    "input_tokens": 800,
                    "input_tokens_details": {"cached_tokens": 0},
                    "output_tokens": 256,
                    "output_tokens_details": {"reasoning_tokens": 0},
                    "total_tokens": 1056,
                },
            },
        },
        event="response.incomplete",
    )

    meter, _ = run_meter(
        openai_responses, [RESPONSES_CREATED, RESPONSES_DELTA, incomplete]
    )

    assert meter.usage == Usage(input_tokens=800, output_tokens=256)
    assert cost("gpt-4o", meter.usage) == 4_560_000
    assert meter.finished is True
    assert meter.failed is False


def test_responses_failed_null_usage() -> None:
    """response.failed with null usage leaves usage None and marks failure."""
    failed = sse(
        {
            "type": "response.failed",
            "response": {
                "id": "resp_1",
                "status": "failed",
                "error": {"code": "server_error", "message": "The model failed."},
                "usage": None,
            },
        },
        event="response.failed",
    )

    meter, _ = run_meter(openai_responses, [RESPONSES_CREATED, RESPONSES_DELTA, failed])

    assert meter.usage is None
    assert meter.finished is True
    assert meter.failed is True


def test_responses_completed_event_alone() -> None:
    """One response.completed event gives the cost without end of stream."""
    completed = {
        "type": "response.completed",
        "response": {
            "id": "resp_1",
            "status": "completed",
            "usage": {
                "input_tokens": 1000,
                "input_tokens_details": {"cached_tokens": 600},
                "output_tokens": 50,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": 1050,
            },
        },
    }
    meter = openai_responses.new_meter()

    meter.feed(Event(event="response.completed", data=json.dumps(completed)))

    assert meter.usage == Usage(
        input_tokens=400, cache_read_tokens=600, output_tokens=50
    )
    assert cost("gpt-4o", meter.usage) == 2_250_000
    assert meter.finished is True


# Cached and reasoning tokens


CACHED_DOCUMENT = {
    "usage": {
        "prompt_tokens": 27147,
        "prompt_tokens_details": {"cached_tokens": 27146},
        "completion_tokens": 351,
        "total_tokens": 27498,
    }
}


def test_cached_tokens_at_cache_price() -> None:
    """27146 of 27147 prompt tokens cached cost $0.00860376, not $0.0395502."""
    usage = openai_chat.usage_from_json(CACHED_DOCUMENT, set())

    assert usage == Usage(input_tokens=1, cache_read_tokens=27146, output_tokens=351)
    assert cost("fw-model", usage) == 8_603_760


def test_cached_without_price_at_input_rate() -> None:
    """Without a cache_read price, cached tokens cost the input price."""
    price = Price(input=Decimal("1.40"), output=Decimal("4.40"))
    usage = openai_chat.usage_from_json(CACHED_DOCUMENT, set())

    assert price.cost_nanos(usage) == 39_550_200


def test_fully_cached_never_free() -> None:
    """A million cached tokens without a cache price cost the input price."""
    price = Price(input=Decimal("1.40"), output=Decimal("4.40"))

    assert price.cost_nanos(Usage(cache_read_tokens=1_000_000)) == 1_400_000_000


REASONING_DOCUMENT = {
    "usage": {
        "prompt_tokens": 14746,
        "completion_tokens": 1944,
        "completion_tokens_details": {"reasoning_tokens": 1360},
        "total_tokens": 16690,
    }
}


def test_reasoning_inside_output() -> None:
    """Reasoning tokens are part of completion_tokens: $0.7923, not $1.0371."""
    usage = openai_chat.usage_from_json(REASONING_DOCUMENT, set())

    assert usage == Usage(input_tokens=14746, output_tokens=1944, reasoning_tokens=1360)
    assert cost("reasoner-x", usage) == 792_300_000


def test_reasoning_price_on_reasoning_part() -> None:
    """A reasoning price of 60 applies to the 1360 reasoning tokens only."""
    price = Price(input=Decimal(30), output=Decimal(180), reasoning=Decimal(60))
    usage = openai_chat.usage_from_json(REASONING_DOCUMENT, set())

    assert price.cost_nanos(usage) == 629_100_000


# Price lookup


def test_lookup_unknown_model() -> None:
    """A model absent from the table has no price."""
    assert PRICES.lookup("deepinfra/new-model-x") is None


def test_lookup_no_prefix_match() -> None:
    """A name that only starts with a priced name has no price."""
    assert PRICES.lookup("gpt-4o-foo") is None


def test_lookup_dated_own_entry() -> None:
    """A dated name with its own entry resolves to that entry."""
    price = PRICES.lookup("gpt-4o-2024-05-13")

    assert price == Price(input=Decimal("5.00"), output=Decimal("15.00"))


def test_lookup_dated_falls_back_undated() -> None:
    """A dated name without its own entry resolves to the undated name."""
    assert PRICES.lookup("gpt-4o-2024-08-06") == PRICES.lookup("gpt-4o")
    assert PRICES.lookup("gpt-4o-20240806") == PRICES.lookup("gpt-4o")


def test_lookup_alias() -> None:
    """An alias, also with a date suffix, resolves to its target's price."""
    table = load_price_table(
        {"claude-sonnet-4": {"input": "3.00", "output": "15.00"}},
        {"sonnet": "claude-sonnet-4"},
        include_defaults=False,
    )
    target = table.lookup("claude-sonnet-4")

    assert table.lookup("sonnet") == target
    assert table.lookup("sonnet-20250514") == target


def test_alias_to_unpriced_model_rejected() -> None:
    """An alias whose target has no price raises ConfigError naming the alias."""
    with pytest.raises(ConfigError) as caught:
        load_price_table({}, {"sonnet": "claude-missing"}, include_defaults=False)

    assert caught.value.path == "pricing.aliases.sonnet"


# Invalid counts and prices


def test_negative_tokens_clamped() -> None:
    """A negative completion count is clamped to 0 and flagged."""
    flags: set[str] = set()
    document = {"usage": {"prompt_tokens": 100, "completion_tokens": -100}}

    usage = openai_chat.usage_from_json(document, flags)

    assert usage == Usage(input_tokens=100, output_tokens=0)
    assert "negative_tokens" in flags
    assert cost("gpt-4o-mini", usage) == 15_000


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(
            '{"usage":{"prompt_tokens":"NaN","completion_tokens":5}}', id="nan-string"
        ),
        pytest.param(
            '{"usage":{"prompt_tokens":1e309,"completion_tokens":5}}', id="overflow-inf"
        ),
        pytest.param(
            '{"usage":{"prompt_tokens":NaN,"completion_tokens":5}}', id="nan-literal"
        ),
        pytest.param(
            '{"usage":{"prompt_tokens":12.5,"completion_tokens":5}}', id="fraction"
        ),
    ],
)
def test_invalid_count_no_usage(body: str) -> None:
    """A non-finite or non-integer count gives no usage and a flag, not an error."""
    flags: set[str] = set()

    usage = openai_chat.usage_from_json(json.loads(body), flags)

    assert usage is None
    assert "invalid_usage" in flags


def test_json_overflow_is_infinity() -> None:
    """json.loads reads 1e309 as infinity, which the invalid-count case relies on."""
    assert json.loads("1e309") == float("inf")


def test_negative_price_rejected() -> None:
    """parse_price rejects a negative input price and names the field path."""
    with pytest.raises(ConfigError) as caught:
        parse_price({"input": -1000000, "output": 1}, "pricing.models.bad")

    assert caught.value.path == "pricing.models.bad.input"
    assert "pricing.models.bad.input" in str(caught.value)


def test_negative_price_in_table_rejected() -> None:
    """load_price_table rejects a negative price and names the model's path."""
    with pytest.raises(ConfigError) as caught:
        load_price_table(
            {"bad": {"input": -1000000, "output": 1}}, include_defaults=False
        )

    assert caught.value.path == "pricing.models.bad.input"


# Exact sums


def test_ten_charges_sum_exactly() -> None:
    """Ten $0.10 charges sum to exactly $1.00 in nano-dollars."""
    charge = cost("gpt-4o", Usage(input_tokens=40_000))

    total = sum(charge for _ in range(10))

    assert charge == 100_000_000
    assert total == 1_000_000_000
    assert money.nanos_to_usd(total) == Decimal("1.000000000")


# Chunk boundaries inside events

SPLIT_ANTHROPIC_CHUNKS = [
    (
        b"event: message_start\n"
        b'data: {"type":"message_start","message":{"model":"claude-sonnet-4",'
        b'"usage":{"input_tokens":9,"output_tokens":1}}}\n'
        b"\n"
        b"event: message_delta\n"
        b"da"
    ),
    (
        b'ta: {"type":"message_delta","delta":{"stop_reason":"end_turn"},'
        b'"usage":{"output_tokens":1'
    ),
    b"6}}\n",
    b'\nevent: message_stop\ndata: {"type":"message_stop"}\n\n',
]


def test_split_anthropic_stream_usage() -> None:
    """Chunks that split a field name and a number give 9 in, 16 out: $0.000267."""
    meter, _ = run_meter(anthropic_messages, SPLIT_ANTHROPIC_CHUNKS)

    assert meter.usage.output_tokens == 16
    assert meter.usage.input_tokens == 9
    assert cost("claude-sonnet-4", meter.usage) == 267_000
    assert meter.finished is True


def test_split_anthropic_raw_bytes() -> None:
    """With keep_raw, the raw blocks rebuild the chunks byte for byte."""
    decoder = SSEDecoder(keep_raw=True)
    raw = b""

    for chunk in SPLIT_ANTHROPIC_CHUNKS:
        raw += b"".join(block for _, block in decoder.feed_blocks(chunk))
    raw += decoder.close()

    assert raw == b"".join(SPLIT_ANTHROPIC_CHUNKS)


def test_utf8_text_delta_split() -> None:
    """A text delta "é" whose two bytes are split across chunks decodes to "é"."""
    delta = sse(
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": "é"},
        },
        event="content_block_delta",
    )
    split = delta.index(b"\xc3\xa9") + 1
    decoder = SSEDecoder()

    events = decoder.feed(delta[:split]) + decoder.feed(delta[split:])
    meter = anthropic_messages.new_meter()
    meter.feed(events[0])

    assert len(events) == 1
    assert json.loads(events[0].data)["delta"]["text"] == "é"
    assert meter.text_chars == 1


# Buffered bodies and large events

SPLIT_JSON_CONTENT = "x" * 40_000
SPLIT_JSON_PIECES = [
    '{"id":"chatcmpl-1","object":"chat.completion","model":"gpt-4o-mini",'
    '"choices":[{"index":0,"message":{"role":"assistant","content":"'
    + SPLIT_JSON_CONTENT,
    '"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1000,',
    '"completion_tokens":500,"total_tokens":1500}}',
]


def test_split_json_body_usage() -> None:
    """A JSON body joined from three pieces gives 1000 in, 500 out: $0.00045."""
    document = json.loads("".join(SPLIT_JSON_PIECES))

    usage = openai_chat.usage_from_json(document, set())

    assert usage == Usage(input_tokens=1000, output_tokens=500)
    assert cost("gpt-4o-mini", usage) == 450_000
    assert openai_chat.text_chars_from_json(document) == 40_000


@pytest.mark.parametrize("index", range(len(SPLIT_JSON_PIECES)))
def test_split_json_piece_invalid(index: int) -> None:
    """No single piece of the split body parses as JSON."""
    with pytest.raises(ValueError):
        json.loads(SPLIT_JSON_PIECES[index])


BIG_ARGUMENTS = "a" * (300 * 1024)
BIG_EVENT = sse(
    {
        "choices": [
            {
                "index": 0,
                "delta": {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "call_1",
                            "type": "function",
                            "function": {
                                "name": "write_file",
                                "arguments": BIG_ARGUMENTS,
                            },
                        }
                    ]
                },
                "finish_reason": None,
            }
        ]
    }
)
BIG_EVENT_CHUNKS = [
    BIG_EVENT[start : start + 64 * 1024]
    for start in range(0, len(BIG_EVENT), 64 * 1024)
]
USAGE_TAIL = (
    sse(
        {
            "choices": [],
            "usage": {
                "prompt_tokens": 1000,
                "completion_tokens": 1000,
                "total_tokens": 2000,
            },
        }
    )
    + b"data: [DONE]\n\n"
)


def test_big_event_five_chunks() -> None:
    """The 300 KB event arrives as five 64 KB chunks."""
    assert len(BIG_EVENT_CHUNKS) == 5


def test_usage_after_big_event() -> None:
    """A 300 KB tool-call event does not hide the usage: $0.00075."""
    meter, decoder = run_meter(openai_chat, [*BIG_EVENT_CHUNKS, USAGE_TAIL])

    assert meter.usage == Usage(input_tokens=1000, output_tokens=1000)
    assert cost("gpt-4o-mini", meter.usage) == 750_000
    assert meter.text_chars == 300 * 1024
    assert decoder.dropped_events == 0


def test_big_event_dropped_usage_kept() -> None:
    """Above a 64 KB limit the big event is dropped and the usage still read."""
    meter, decoder = run_meter(
        openai_chat, [*BIG_EVENT_CHUNKS, USAGE_TAIL], max_event_bytes=64 * 1024
    )

    assert decoder.dropped_events == 1
    assert meter.usage == Usage(input_tokens=1000, output_tokens=1000)
    assert cost("gpt-4o-mini", meter.usage) == 750_000
    assert meter.text_chars == 0
