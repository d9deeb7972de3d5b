"""Tests for the incremental SSE decoder against the WHATWG event-stream rules.

The rules are those of the WHATWG HTML Living Standard, section 9.2
"Server-sent events", subsections "Parsing an event stream" and
"Interpreting an event stream".
"""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from lynkr_extproc.sse import Event, SSEDecoder

# Three events with every line ending, a comment, an id and a retry field,
# followed by a block that has no closing blank line.
STREAM = (
    b": keep-alive\r\n"
    b"\r\n"
    b"event: message_start\n"
    b'data: {"type":"message_start"}\n'
    b"\n"
    b"id: 7\r"
    b"data: first line\r"
    b"data:second line\r\n"
    b"\r"
    b"retry: 1500\r\n"
    b"data: caf\xc3\xa9\n"
    b"\r\n"
    b"data: never dispatched\n"
)

STREAM_EVENTS = [
    Event(event="message_start", data='{"type":"message_start"}'),
    Event(data="first line\nsecond line", id="7"),
    Event(data="café", id="7", retry=1500),
]

# The Anthropic stream whose chunks split a field name ("da" + "ta:"), a
# number ("1" + "6") and the blank line that ends an event ("\n" + "\n").
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


def decode(data: bytes, **options: int) -> list[Event]:
    """Decode `data` fed as one chunk, then close the decoder."""
    return decode_chunks([data], **options)


def decode_chunks(chunks: list[bytes], **options: int) -> list[Event]:
    """Decode `chunks` fed one after another, then close the decoder."""
    decoder = SSEDecoder(**options)
    events: list[Event] = []
    for chunk in chunks:
        events.extend(decoder.feed(chunk))
    decoder.close()
    return events


def raw_blocks(chunks: list[bytes]) -> list[bytes]:
    """Return the raw bytes of every block, then the bytes close() returns."""
    decoder = SSEDecoder(keep_raw=True)
    blocks: list[bytes] = []
    for chunk in chunks:
        blocks.extend(raw for _, raw in decoder.feed_blocks(chunk))
    blocks.append(decoder.close())
    return blocks


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    """Cut `data` at the given offsets, which may repeat or be unsorted."""
    bounds = [0, *sorted(cuts), len(data)]
    return [data[start:end] for start, end in itertools.pairwise(bounds)]


# Line endings


def test_lf_line_endings() -> None:
    """LF ends lines and an empty LF line dispatches."""
    assert decode(b"data: a\ndata: b\n\n") == [Event(data="a\nb")]


def test_cr_line_endings() -> None:
    """A lone CR ends lines and an empty CR line dispatches."""
    assert decode(b"data: a\rdata: b\r\r") == [Event(data="a\nb")]


def test_crlf_line_endings() -> None:
    """CRLF is one line ending, not a line ending plus a blank line."""
    assert decode(b"data: a\r\ndata: b\r\n\r\n") == [Event(data="a\nb")]


def test_mixed_line_endings() -> None:
    """CRLF, CR and LF mix freely within one event."""
    assert decode(b"data: a\r\ndata: b\rdata: c\n\r\n") == [Event(data="a\nb\nc")]


def test_lf_then_cr_is_two_line_endings() -> None:
    """LF followed by CR is two line endings, so it dispatches."""
    assert decode(b"data: a\n\rdata: b\n\n") == [Event(data="a"), Event(data="b")]


def test_crlf_split_across_chunks() -> None:
    """A CR ending one chunk and the LF starting the next are one line ending."""
    events = decode_chunks([b"data: a\r", b"\ndata: b\r\n\r\n"])

    assert events == [Event(data="a\nb")]


def test_crlf_split_by_empty_chunk() -> None:
    """An empty chunk between the CR and the LF of a CRLF changes nothing."""
    events = decode_chunks([b"data: a\r", b"", b"\ndata: b\r\n\r\n"])

    assert events == [Event(data="a\nb")]


def test_blank_crlf_split_across_chunks() -> None:
    """A blank CRLF line split across chunks dispatches exactly once."""
    decoder = SSEDecoder()

    first = decoder.feed(b"data: a\r\n\r")
    second = decoder.feed(b"\ndata: b\r\n\r\n")

    assert first == [Event(data="a")]
    assert second == [Event(data="b")]


# Fields


def test_comment_lines_ignored() -> None:
    """Lines starting with a colon are comments, inside or between events."""
    events = decode(b": hello\ndata: x\n: between fields\ndata: y\n\n")

    assert events == [Event(data="x\ny")]


def test_comment_only_block_not_dispatched() -> None:
    """A keep-alive block that contains only a comment dispatches nothing."""
    assert decode(b": keep-alive\n\n") == []


def test_data_without_space() -> None:
    """`data:x` and `data: x` give the same value."""
    assert decode(b"data:x\n\ndata: x\n\n") == [Event(data="x"), Event(data="x")]


def test_only_one_leading_space_removed() -> None:
    """Only the first space after the colon is removed from the value."""
    assert decode(b"data:  x \n\n") == [Event(data=" x ")]


def test_colon_in_value_kept() -> None:
    """Only the first colon separates the field name from the value."""
    assert decode(b"data: a:b: c\n\n") == [Event(data="a:b: c")]


def test_multiline_data_joined_with_lf() -> None:
    """Several data lines join with LF and the last LF is removed."""
    assert decode(b"data: a\ndata: b\ndata: c\n\n") == [Event(data="a\nb\nc")]


def test_empty_data_fields() -> None:
    """`data` with no colon is an empty value, and two of them give one LF."""
    events = decode(b"data\n\ndata\ndata\n\ndata:\n\n")

    assert events == [Event(data=""), Event(data="\n"), Event(data="")]


def test_event_field_sets_type() -> None:
    """The `event` field sets the type of the event it belongs to."""
    assert decode(b"event: ping\ndata: x\n\n") == [Event(event="ping", data="x")]


def test_event_type_resets_after_dispatch() -> None:
    """An event without an `event` field, or with an empty one, is "message"."""
    events = decode(b"event: ping\ndata: 1\n\ndata: 2\n\nevent:\ndata: 3\n\n")

    assert [event.event for event in events] == ["ping", "message", "message"]


def test_id_field_sets_event_id() -> None:
    """The `id` field sets the id of its event and of every later event."""
    decoder = SSEDecoder()

    events = decoder.feed(b"id: 42\ndata: a\n\ndata: b\n\n")

    assert [event.id for event in events] == ["42", "42"]
    assert decoder.last_event_id == "42"


def test_empty_id_resets_event_id() -> None:
    """An `id` field with no value clears the last event id."""
    decoder = SSEDecoder()

    events = decoder.feed(b"id: 42\ndata: a\n\nid\ndata: b\n\n")

    assert [event.id for event in events] == ["42", None]
    assert decoder.last_event_id == ""


def test_id_with_null_ignored() -> None:
    """An `id` value containing U+0000 is ignored."""
    decoder = SSEDecoder()

    events = decoder.feed(b"id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n")

    assert [event.id for event in events] == ["1", "1"]
    assert decoder.last_event_id == "1"


def test_id_without_data_still_updates_last_id() -> None:
    """A block with only an `id` dispatches nothing but sets the last id."""
    decoder = SSEDecoder()

    events = decoder.feed(b"id: 9\n\ndata: a\n\n")

    assert events == [Event(data="a", id="9")]


def test_retry_field_sets_retry() -> None:
    """A `retry` value of ASCII digits is read as an integer."""
    assert decode(b"retry: 3000\ndata: x\n\n") == [Event(data="x", retry=3000)]


def test_retry_non_digits_ignored() -> None:
    """A `retry` value with anything but ASCII digits is ignored."""
    events = decode(
        b"retry: 3s\ndata: a\n\nretry: -1\ndata: b\n\nretry: \xd9\xa3\ndata: c\n\n"
    )

    assert [event.retry for event in events] == [None, None, None]


def test_unknown_field_ignored() -> None:
    """Unknown field names, including a name with a leading space, are ignored."""
    assert decode(b"foo: bar\n data: x\ndata: y\n\n") == [Event(data="y")]


def test_event_without_data_not_dispatched() -> None:
    """A block with `event` but no `data` dispatches nothing."""
    assert decode(b"event: ping\n\ndata: x\n\n") == [Event(data="x")]


def test_unfinished_event_dropped_at_close() -> None:
    """An event without its closing blank line is dropped when the stream ends."""
    decoder = SSEDecoder()

    events = decoder.feed(b"data: done\n\ndata: partial\n")
    decoder.close()

    assert events == [Event(data="done")]


def test_close_returns_no_bytes_without_keep_raw() -> None:
    """close() returns empty bytes unless the decoder keeps raw bytes."""
    decoder = SSEDecoder()
    decoder.feed(b"data: partial")

    assert decoder.close() == b""


# Text decoding


def test_utf8_character_split_across_chunks() -> None:
    """A two-byte UTF-8 character split across chunks decodes whole."""
    events = decode_chunks([b"data: caf\xc3", b"\xa9\n\n"])

    assert events == [Event(data="café")]


def test_invalid_utf8_replaced() -> None:
    """Invalid UTF-8 decodes to U+FFFD instead of raising."""
    assert decode(b"data: a\xffb\n\n") == [Event(data="a\ufffdb")]


def test_leading_bom_ignored() -> None:
    """One UTF-8 byte order mark at the start of the stream is ignored."""
    assert decode(b"\xef\xbb\xbfdata: x\n\n") == [Event(data="x")]


def test_leading_bom_split_across_chunks() -> None:
    """A leading byte order mark split across chunks is still ignored."""
    events = decode_chunks([b"\xef", b"\xbb\xbfdata: 1\n\ndata: 2\n\n"])

    assert events == [Event(data="1"), Event(data="2")]


def test_bom_after_start_kept() -> None:
    """A byte order mark after the start of the stream is part of the text."""
    assert decode(b"data: x\n\ndata: \xef\xbb\xbfy\n\n")[1] == Event(data="\ufeffy")


# Chunk boundaries


def test_whole_stream_events() -> None:
    """The reference stream decodes to its three events when fed whole."""
    assert decode(STREAM) == STREAM_EVENTS


def test_every_split_point_gives_same_events() -> None:
    """Cutting the stream in two at any byte gives the events of the whole."""
    for cut in range(len(STREAM) + 1):
        events = decode_chunks([STREAM[:cut], STREAM[cut:]])

        assert events == STREAM_EVENTS, f"cut at byte {cut}"


def test_one_byte_chunks_give_same_events() -> None:
    """Feeding the stream one byte at a time gives the events of the whole."""
    chunks = [STREAM[index : index + 1] for index in range(len(STREAM))]

    assert decode_chunks(chunks) == STREAM_EVENTS


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=40))
def test_random_chunking_gives_same_events(cuts: list[int]) -> None:
    """Cutting the stream at random offsets into many chunks changes nothing."""
    assert decode_chunks(split_at(STREAM, cuts)) == STREAM_EVENTS


FIELD_VALUES = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"),
    max_size=20,
)
EVENTS = st.lists(
    st.tuples(
        st.text(alphabet="abcdefghijklmnopqrstuvwxyz_.", min_size=1, max_size=12),
        st.lists(FIELD_VALUES, min_size=1, max_size=4),
    ),
    max_size=6,
)
LINE_ENDINGS = st.sampled_from([b"\n", b"\r", b"\r\n"])


@given(EVENTS, st.data())
def test_generated_events_round_trip(
    events: list[tuple[str, list[str]]], data: st.DataObject
) -> None:
    """Encoded events with random line endings and chunking decode unchanged."""
    stream = b""
    for event_type, lines in events:
        stream += b"event: " + event_type.encode() + data.draw(LINE_ENDINGS)
        for line in lines:
            ending = data.draw(LINE_ENDINGS)
            stream += b"data: " + line.encode() + ending
        # A CR followed by a blank LF line would read as one CRLF ending.
        blank_endings = [b"\r", b"\r\n"] if ending == b"\r" else [b"\n", b"\r", b"\r\n"]
        stream += data.draw(st.sampled_from(blank_endings))
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=20))

    decoded = decode_chunks(split_at(stream, cuts))

    assert decoded == [
        Event(event=kind, data="\n".join(lines)) for kind, lines in events
    ]


# Raw blocks


def test_feed_blocks_marks_blocks_without_event() -> None:
    """Blocks that dispatch nothing come back with None and their raw bytes."""
    decoder = SSEDecoder(keep_raw=True)

    blocks = decoder.feed_blocks(b": ping\n\nevent: x\n\ndata: y\n\n")

    assert blocks == [
        (None, b": ping\n\n"),
        (None, b"event: x\n\n"),
        (Event(data="y"), b"data: y\n\n"),
    ]


def test_feed_blocks_raw_empty_without_keep_raw() -> None:
    """Without keep_raw every block comes back with empty bytes."""
    decoder = SSEDecoder()

    blocks = decoder.feed_blocks(b": ping\n\ndata: y\n\n")

    assert blocks == [(None, b""), (Event(data="y"), b"")]


def test_raw_blocks_rebuild_input_at_every_split() -> None:
    """Raw block bytes plus close() equal the input for every two-chunk split."""
    for cut in range(len(STREAM) + 1):
        blocks = raw_blocks([STREAM[:cut], STREAM[cut:]])

        assert b"".join(blocks) == STREAM, f"cut at byte {cut}"


def test_raw_blocks_rebuild_input_one_byte_chunks() -> None:
    """Raw block bytes plus close() equal the input fed one byte at a time."""
    chunks = [STREAM[index : index + 1] for index in range(len(STREAM))]

    assert b"".join(raw_blocks(chunks)) == STREAM


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=40))
def test_raw_blocks_rebuild_input_random_chunks(cuts: list[int]) -> None:
    """Raw block bytes plus close() equal the input under random chunking."""
    assert b"".join(raw_blocks(split_at(STREAM, cuts))) == STREAM


def test_raw_block_ends_at_blank_line() -> None:
    """Each raw block ends with the blank line that dispatched its event."""
    decoder = SSEDecoder(keep_raw=True)

    blocks = decoder.feed_blocks(b"data: a\r\n\r\ndata: b\r\r")

    assert [raw for _, raw in blocks] == [b"data: a\r\n\r\n", b"data: b\r\r"]


def test_close_returns_unfinished_block_bytes() -> None:
    """close() returns the bytes of the block that had no closing blank line."""
    decoder = SSEDecoder(keep_raw=True)
    decoder.feed(b"data: a\n\ndata: part")

    assert decoder.close() == b"data: part"


def test_split_anthropic_stream_events() -> None:
    """Chunks that split a field name and a blank line decode to three events."""
    events = decode_chunks(SPLIT_ANTHROPIC_CHUNKS)

    assert [event.event for event in events] == [
        "message_start",
        "message_delta",
        "message_stop",
    ]
    assert events[1].data == (
        '{"type":"message_delta","delta":{"stop_reason":"end_turn"},'
        '"usage":{"output_tokens":16}}'
    )


def test_split_anthropic_stream_raw_bytes() -> None:
    """The raw blocks of the split Anthropic stream rebuild it byte for byte."""
    blocks = raw_blocks(SPLIT_ANTHROPIC_CHUNKS)

    assert b"".join(blocks) == b"".join(SPLIT_ANTHROPIC_CHUNKS)


# Oversized events


def test_oversized_event_dropped() -> None:
    """An event above max_event_bytes is dropped and counted."""
    decoder = SSEDecoder(max_event_bytes=64)

    events = decoder.feed(b"data: " + b"x" * 100 + b"\n\n")

    assert events == []
    assert decoder.dropped_events == 1


def test_event_after_oversized_decoded() -> None:
    """An event that follows a dropped oversized event is still decoded."""
    decoder = SSEDecoder(max_event_bytes=64)

    events = decoder.feed(b"data: " + b"x" * 100 + b"\n\ndata: usage\n\n")

    assert events == [Event(data="usage")]
    assert decoder.dropped_events == 1


def test_oversized_event_across_chunks_dropped() -> None:
    """An event that grows past the limit over several chunks is dropped."""
    decoder = SSEDecoder(max_event_bytes=64)
    chunks = [b"data: ", *[b"x" * 30] * 5, b"\n\ndata: usage\n\n"]

    events = [event for chunk in chunks for event in decoder.feed(chunk)]

    assert events == [Event(data="usage")]
    assert decoder.dropped_events == 1


def test_oversized_multiline_event_dropped_whole() -> None:
    """No line of an oversized event is dispatched, even after the large line."""
    decoder = SSEDecoder(max_event_bytes=64)
    stream = b"data: " + b"x" * 100 + b"\ndata: tail\n\ndata: next\n\n"

    events = decoder.feed(stream)

    assert events == [Event(data="next")]
    assert decoder.dropped_events == 1


def test_oversized_multibyte_event_dropped() -> None:
    """The limit counts bytes, so 83 bytes of two-byte characters exceed 64."""
    decoder = SSEDecoder(max_event_bytes=64)
    line = "data: " + "é" * 10 + "\n"

    events = decoder.feed((line * 4 + "\n").encode())

    assert events == []
    assert decoder.dropped_events == 1


def test_oversized_event_raw_bytes_kept() -> None:
    """With keep_raw, a dropped event's bytes still rebuild the input."""
    stream = b"data: " + b"x" * 100 + b"\n\ndata: usage\n\ndata: end"
    for cut in range(len(stream) + 1):
        decoder = SSEDecoder(max_event_bytes=64, keep_raw=True)
        blocks = decoder.feed_blocks(stream[:cut]) + decoder.feed_blocks(stream[cut:])

        rebuilt = b"".join(raw for _, raw in blocks) + decoder.close()

        assert rebuilt == stream, f"cut at byte {cut}"
