"""Stream framings other than SSE: Bedrock's event stream and Ollama's NDJSON."""

from __future__ import annotations

import json

import pytest

from lynkr_extproc.formats import bedrock_converse, ollama
from lynkr_extproc.framing import EventStreamFramer, NDJSONFramer, encode_event_stream
from lynkr_extproc.pricing import Usage, load_price_table

PRICES = load_price_table(
    {"bedrock/claude-sonnet-4": {"input": 3.00, "cache_read": 0.30, "cache_write": 3.75, "output": 15.00},
     "ollama/llama3": {"input": 0.10, "output": 0.10}},
    include_defaults=False,
)

CONVERSE_EVENTS = [
    ("messageStart", {"role": "assistant"}),
    ("contentBlockDelta", {"delta": {"text": "ok"}, "contentBlockIndex": 0}),
    ("contentBlockStop", {"contentBlockIndex": 0}),
    ("messageStop", {"stopReason": "end_turn"}),
    ("metadata", {"usage": {"inputTokens": 1200, "outputTokens": 300, "totalTokens": 1500}, "metrics": {"latencyMs": 812}}),
]


def converse_stream() -> bytes:
    return b"".join(encode_event_stream(kind, json.dumps(payload).encode()) for kind, payload in CONVERSE_EVENTS)


def meter_events(framer, chunks: list[bytes]):
    meter = bedrock_converse.new_meter()
    states = []
    for chunk in chunks:
        for event, _ in framer.feed_blocks(chunk):
            if event is not None:
                meter.feed(event)
                states.append((event.event, meter.finished))
    return meter, states


def test_converse_stream_usage_after_message_stop():
    """Usage comes from metadata, after messageStop, and costs $0.0081."""
    meter, states = meter_events(EventStreamFramer(), [converse_stream()])
    assert meter.usage == Usage(input_tokens=1200, output_tokens=300)
    assert PRICES.lookup("bedrock/claude-sonnet-4").cost_nanos(meter.usage) == 8_100_000
    assert ("messageStop", False) in states
    assert states[-1] == ("metadata", True)
    assert meter.text_chars == 2


@pytest.mark.parametrize("cut", [3, 6, 11, 12, 13])
def test_prelude_split_across_chunks(cut):
    """A frame whose 12-byte prelude is cut across two chunks is reassembled."""
    data = converse_stream()
    second = len(encode_event_stream(*_encoded(0)))
    chunks = [data[: second + cut], data[second + cut :]]
    meter, _ = meter_events(EventStreamFramer(), chunks)
    assert meter.usage == Usage(input_tokens=1200, output_tokens=300)


def _encoded(index: int) -> tuple[str, bytes]:
    kind, payload = CONVERSE_EVENTS[index]
    return kind, json.dumps(payload).encode()


def test_every_byte_boundary():
    """Fed one byte at a time, the stream gives the same usage."""
    data = converse_stream()
    meter, _ = meter_events(EventStreamFramer(), [data[i : i + 1] for i in range(len(data))])
    assert meter.usage == Usage(input_tokens=1200, output_tokens=300)


def test_crc_failure_is_not_billed():
    """A metadata frame with a broken CRC is skipped and counted, not metered."""
    frames = [encode_event_stream(kind, json.dumps(payload).encode()) for kind, payload in CONVERSE_EVENTS]
    broken = bytearray(frames[-1])
    broken[-6] ^= 0xFF
    framer = EventStreamFramer()
    meter, _ = meter_events(framer, [b"".join(frames[:-1]) + bytes(broken)])
    assert meter.usage is None
    assert framer.bad_messages == 1


def test_decoded_variant_with_nested_usage():
    """A decoded metadata event with usage at metadata.usage is read the same."""
    framer = NDJSONFramer()
    line = json.dumps({"metadata": {"usage": {"inputTokens": 1200, "outputTokens": 300}}}).encode() + b"\n"
    meter, _ = meter_events(framer, [line])
    assert meter.usage == Usage(input_tokens=1200, output_tokens=300)


def test_invoke_chunk_unwrapped():
    """InvokeModel stream chunks wrap base64 Anthropic events, which are unwrapped."""
    import base64

    inner = {"type": "message_stop", "amazon-bedrock-invocationMetrics": {"inputTokenCount": 5}}
    payload = json.dumps({"bytes": base64.b64encode(json.dumps(inner).encode()).decode()}).encode()
    (event, _), = EventStreamFramer().feed_blocks(encode_event_stream("chunk", payload))
    assert event.event == "chunk"
    assert json.loads(event.data)["type"] == "message_stop"


def ollama_lines(*documents: dict) -> bytes:
    return b"".join(json.dumps(d).encode() + b"\n" for d in documents)


def test_ollama_chat_stream_usage():
    """The final done object of /api/chat carries prompt_eval_count and eval_count."""
    data = ollama_lines(
        {"model": "llama3", "message": {"role": "assistant", "content": "Hel"}, "done": False},
        {"model": "llama3", "message": {"role": "assistant", "content": "lo"}, "done": False},
        {"model": "llama3", "message": {"role": "assistant", "content": ""}, "done": True,
         "done_reason": "stop", "prompt_eval_count": 26, "eval_count": 290},
    )
    framer, meter = NDJSONFramer(), ollama.chat.new_meter()
    for index in range(0, len(data), 7):
        for event, _ in framer.feed_blocks(data[index : index + 7]):
            if event is not None:
                meter.feed(event)
    assert meter.usage == Usage(input_tokens=26, output_tokens=290)
    assert meter.finished
    assert meter.text_chars == 5
    assert PRICES.lookup("ollama/llama3").cost_nanos(meter.usage) == 31_600


def test_ollama_missing_prompt_count_is_flagged():
    """A cached prompt leaves prompt_eval_count out: flagged, output still read."""
    flags: set[str] = set()
    usage = ollama.generate.usage_from_json({"response": "x", "done": True, "eval_count": 7}, flags)
    assert usage == Usage(input_tokens=0, output_tokens=7)
    assert "prompt_eval_count_missing" in flags


def test_ollama_unterminated_last_line():
    """A last line without its newline is still read at the end of the body."""
    framer = NDJSONFramer()
    assert framer.feed_blocks(b'{"done": true, "eval_count": 3, "prompt_eval_count": 1}') == []
    event = framer.pending_event()
    meter = ollama.generate.new_meter()
    meter.feed(event)
    assert meter.usage == Usage(input_tokens=1, output_tokens=3)
