"""Tests for request complexity scoring."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lynkr_extproc.formats.base import RequestFacts
from lynkr_extproc.routing.score import Score, estimate_tokens, score_request

# The tools Claude Code offers in a typical session.
CLAUDE_CODE_TOOLS = [
    "Task", "Bash", "Glob", "Grep", "LS", "ExitPlanMode", "Read", "Edit",
    "MultiEdit", "Write", "NotebookEdit", "WebFetch", "TodoWrite",
    "WebSearch", "BashOutput", "KillShell",
]  # fmt: skip

SHELL_TOOLS = ["Bash", "shell", "execute_command", "run_terminal_cmd", "BashOutput"]


def make_facts(
    last_user_text: str,
    *,
    history: str = "",
    message_count: int = 1,
    tool_names: list[str] | None = None,
    tool_result_count: int = 0,
    in_tool_loop: bool = False,
    image_count: int = 0,
) -> RequestFacts:
    """Build facts whose text is `history` followed by the last user message."""
    return RequestFacts(
        model="test-model",
        stream=False,
        output_cap=None,
        text=history + last_user_text,
        last_user_text=last_user_text,
        message_count=message_count,
        tool_names=list(tool_names or []),
        tool_result_count=tool_result_count,
        in_tool_loop=in_tool_loop,
        image_count=image_count,
    )


def default_band(value: int) -> str:
    """Map a score to a tier with the default bands callers use."""
    if value <= 19:
        return "SIMPLE"
    if value <= 50:
        return "MEDIUM"
    if value <= 75:
        return "COMPLEX"
    return "REASONING"


def cue_reasons(score: Score) -> list[str]:
    return [r for r in score.reasons if r.startswith(("cue=", "code="))]


def filler(chars: int, *, fences: int = 0) -> str:
    """Return about `chars` characters of cue-free prose with `fences` blocks."""
    block = "```python\nvalue = compute(item)\n```\n"
    sentence = "The service reads the request and forwards it upstream. "
    prose = (sentence * (chars // len(sentence) + 1))[:chars]
    return block * fences + prose + "\n"


# estimate_tokens


@pytest.mark.parametrize(
    ("text", "expected"),
    [("", 0), ("a", 1), ("abcd", 1), ("abcde", 2), ("x" * 4_000, 1_000)],
)
def test_estimate_tokens_rounds_up(text: str, expected: int) -> None:
    """estimate_tokens returns ceil(len(text) / 4)."""
    assert estimate_tokens(text) == expected


# Whole-word matching


@pytest.mark.parametrize(
    "text",
    [
        "this is a planet",
        "explain this",
        "an explanation of the planetarium",
        "I think hardware is the problem",
        "the ultrathinking crowd",
        "this",
        "shipment",
        "those were unplanned costs",
    ],
)
def test_cue_inside_word_not_matched(text: str) -> None:
    """A cue or greeting inside a longer word does not match."""
    score = score_request(make_facts(text))

    assert score.forced_tier is None
    assert cue_reasons(score) == []
    assert score.value == 0


@pytest.mark.parametrize("text", ["plan", "Plans?", "PLANNING the move", "(planned)"])
def test_plan_cue_matches_word_forms(text: str) -> None:
    """The plan cue matches its word forms in any case and between punctuation."""
    score = score_request(make_facts(text))

    assert "cue=plan" in score.reasons


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("Weigh the trade-offs here", "cue=trade_offs"),
        ("list the tradeoffs", "cue=trade_offs"),
        ("go step-by-step", "cue=step_by_step"),
        ("find the root cause", "cue=root_cause"),
        ("Prove the bound", "cue=prove"),
        ("design the schema", "cue=design"),
        ("review the architecture", "cue=architecture"),
        ("help me debug this", "cue=debug"),
        ("Implement retries", "code=implement"),
        ("refactor the parser", "code=refactor"),
        ("write a function that sums a list", "code=write_code"),
        ("Write a small Python function", "code=write_code"),
        ("fix the failing tests", "code=fix_bug"),
    ],
)
def test_cue_reported_in_reasons(text: str, reason: str) -> None:
    """Each cue in the last user message appears once in the reasons."""
    score = score_request(make_facts(text))

    assert score.reasons.count(reason) == 1


def test_cue_in_history_ignored() -> None:
    """Cues in earlier messages do not count, only the last user message."""
    facts = make_facts("ok, go on", history="Let us plan the design first.\n")

    score = score_request(facts)

    assert cue_reasons(score) == []


def test_cue_window_reads_head_and_tail() -> None:
    """A long message is searched in its first 2 KB and its last 6 KB."""
    long_text = "ultrathink\n" + filler(20_000) + "What are the trade-offs?"

    score = score_request(make_facts(long_text))

    assert score.forced_tier == "REASONING"
    assert "cue=trade_offs" in score.reasons


def test_cue_window_skips_middle() -> None:
    """A cue only in the middle of a message longer than 8 KB is not found."""
    long_text = filler(10_000) + " plan " + filler(10_000)

    score = score_request(make_facts(long_text))

    assert "cue=plan" not in score.reasons


def test_cue_window_cut_word_not_matched() -> None:
    """A word cut at the window's tail edge does not match as a shorter word."""
    # The tail window is the last 6,144 characters, so it starts inside
    # "explan." at "plan.", which would match if the cut word were kept.
    rest = (" word" * 2_000)[: 6_144 - len("plan.")]
    long_text = filler(10_000) + "explan." + rest

    score = score_request(make_facts(long_text))

    assert "cue=plan" not in score.reasons


# Forcing phrases


@pytest.mark.parametrize(
    "text",
    [
        "think hard about the cache invalidation",
        "Think harder.",
        "ULTRATHINK",
        "ultrathink: why does this deadlock?",
        "think step by step carefully about the proof",
        "please think really hard",
    ],
)
def test_forcing_phrase_forces_reasoning(text: str) -> None:
    """Each forcing phrase sets forced_tier REASONING."""
    score = score_request(make_facts(text))

    assert score.forced_tier == "REASONING"
    assert "forced=reasoning" in score.reasons


def test_forcing_phrase_with_tools_forces_reasoning() -> None:
    """A forcing phrase applies in an agent session with tools and history."""
    facts = make_facts(
        "think hard about the failing migration",
        message_count=30,
        tool_names=CLAUDE_CODE_TOOLS,
        tool_result_count=5,
    )

    assert score_request(facts).forced_tier == "REASONING"


@pytest.mark.parametrize(
    "text",
    [
        "hi",
        "Hi!",
        "hello",
        "hey there",
        "thanks!",
        "thank you",
        "Thank you so much!!",
        "ok, thanks",
        "good morning",
        "hi 👋",
    ],
)
def test_greeting_forces_simple(text: str) -> None:
    """A message of only a greeting or thanks sets forced_tier SIMPLE."""
    score = score_request(make_facts(text, message_count=3))

    assert score.forced_tier == "SIMPLE"
    assert "forced=simple" in score.reasons
    assert score.value < 20


def test_greeting_with_tools_not_forced() -> None:
    """A greeting in a request that offers tools is scored, not forced."""
    facts = make_facts("hi", tool_names=["Bash"])

    assert score_request(facts).forced_tier is None


def test_greeting_with_long_history_not_forced() -> None:
    """A thanks at the end of a long conversation is scored, not forced."""
    facts = make_facts("thanks!", message_count=12)

    assert score_request(facts).forced_tier is None


def test_greeting_in_tool_loop_not_forced() -> None:
    """A greeting sent back with tool results is scored, not forced."""
    facts = make_facts("hello", in_tool_loop=True, tool_result_count=1)

    assert score_request(facts).forced_tier is None


def test_greeting_with_image_not_forced() -> None:
    """A greeting with an attached image is scored, not forced."""
    facts = make_facts("hi", image_count=1)

    assert score_request(facts).forced_tier is None


@pytest.mark.parametrize(
    "text", ["hi, can you fix the failing tests?", "hello world", "thanks, now plan it"]
)
def test_greeting_followed_by_request_not_forced(text: str) -> None:
    """A greeting followed by a request is scored, not forced."""
    assert score_request(make_facts(text)).forced_tier is None


# Tools


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("Bash", "shell"),
        ("BashOutput", "shell"),
        ("execute_command", "shell"),
        ("run-shell", "shell"),
        ("Write", "write"),
        ("Edit", "write"),
        ("str_replace_based_edit_tool", "write"),
        ("applyPatch", "write"),
        ("read_file", "read"),
        ("readFile", "read"),
        ("Grep", "read"),
        ("LS", "read"),
        ("fs.search", "read"),
        ("Task", "other"),
        ("Bashful", "other"),
        ("get_weather", "read"),
    ],
)
def test_tool_name_kind(name: str, kind: str) -> None:
    """A tool name is classified by its whole parts, split on _ - . and case."""
    score = score_request(make_facts("go on", tool_names=[name]))

    assert f"tools=1({kind})" in score.reasons


def test_shell_tool_outweighs_read_tool() -> None:
    """One shell tool adds more to the score than one read tool."""
    shell = score_request(make_facts("go on", tool_names=["Bash"]))
    write = score_request(make_facts("go on", tool_names=["Edit"]))
    read = score_request(make_facts("go on", tool_names=["Grep"]))

    assert shell.value > write.value
    assert write.value > read.value


def test_tools_reason_lists_kinds_by_weight() -> None:
    """The tools reason gives the count and the kinds present, heaviest first."""
    facts = make_facts("go on", tool_names=["Grep", "Task", "Edit", "Bash"])

    assert "tools=4(shell,write,other,read)" in score_request(facts).reasons


# Size, depth and code fences


def test_size_points_grow_with_tokens() -> None:
    """A longer prompt never scores lower, and 100k tokens scores higher than 2k."""
    values = [
        score_request(make_facts("go on", history="x" * (tokens * 4))).value
        for tokens in (0, 200, 2_000, 20_000, 100_000, 400_000)
    ]

    assert values == sorted(values)
    assert values[0] == 0
    assert values[4] > values[2]
    assert values[5] == values[4]


def test_depth_reasons() -> None:
    """Message count, tool results and an open tool loop each add a reason."""
    facts = make_facts(
        "go on", message_count=20, tool_result_count=3, in_tool_loop=True
    )

    score = score_request(facts)

    assert "messages=20" in score.reasons
    assert "tool_results=3" in score.reasons
    assert "in_tool_loop" in score.reasons
    assert score.value > 0


def test_code_fences_counted() -> None:
    """Pairs of ``` fences in the prompt count as code blocks."""
    facts = make_facts("what does this print?", history=filler(100, fences=2))

    score = score_request(facts)

    assert "fences=2" in score.reasons
    assert score.value > 0


def test_tokens_reason_first() -> None:
    """The reasons start with the estimated token count of the whole text."""
    facts = make_facts("abcdefgh", history="x" * 4_000)

    assert score_request(facts).reasons[0] == "tokens=1002"


# Calibration against the default bands


def test_greeting_alone_is_simple() -> None:
    """"hi" alone is forced SIMPLE with a value in the SIMPLE band."""
    score = score_request(make_facts("hi"))

    assert score.forced_tier == "SIMPLE"
    assert default_band(score.value) == "SIMPLE"


def test_short_factual_question_is_simple() -> None:
    """A short factual question lands in the SIMPLE band."""
    score = score_request(make_facts("What is the capital of France?"))

    assert score.forced_tier is None
    assert default_band(score.value) == "SIMPLE"


def test_small_function_request_is_medium() -> None:
    """A request for one small function, with no tools, lands in MEDIUM."""
    text = "Write a small Python function that checks if a string is a palindrome."

    score = score_request(make_facts(text))

    assert score.forced_tier is None
    assert default_band(score.value) == "MEDIUM"


def test_coding_agent_request_is_complex() -> None:
    """A Claude Code request with its tools and a code task lands in COMPLEX."""
    facts = make_facts(
        "Implement a retry decorator in utils/http.py and add unit tests for it.",
        history=filler(48_000, fences=2),
        message_count=20,
        tool_names=CLAUDE_CODE_TOOLS,
        tool_result_count=3,
    )

    score = score_request(facts)

    assert score.forced_tier is None
    assert default_band(score.value) == "COMPLEX"


def test_long_planning_request_is_reasoning() -> None:
    """A long architecture request with tools and trade-offs lands in REASONING."""
    facts = make_facts(
        "Before we change anything, design the architecture for multi-region "
        "failover. Lay out a plan and the trade-offs of active-active versus "
        "active-passive.",
        history=filler(160_000, fences=4),
        message_count=40,
        tool_names=CLAUDE_CODE_TOOLS,
        tool_result_count=12,
    )

    score = score_request(facts)

    assert score.forced_tier is None
    assert default_band(score.value) == "REASONING"


def test_think_hard_request_forces_reasoning() -> None:
    """"think hard about ..." forces REASONING whatever its value."""
    score = score_request(make_facts("think hard about the capital of France"))

    assert score.forced_tier == "REASONING"


def test_max_without_reasoning_cue_is_75() -> None:
    """Every part but reasoning at its cap gives 75, the top of COMPLEX."""
    facts = make_facts(
        "Implement the parser.",
        history=filler(1_000_000, fences=10),
        message_count=500,
        tool_names=CLAUDE_CODE_TOOLS * 4,
        tool_result_count=50,
        in_tool_loop=True,
    )

    assert score_request(facts).value == 75


def test_every_part_at_cap_is_100() -> None:
    """Every part at its cap gives exactly 100."""
    facts = make_facts(
        "Implement the plan, then design and prove the trade-offs.",
        history=filler(1_000_000, fences=10),
        message_count=500,
        tool_names=CLAUDE_CODE_TOOLS * 4,
        tool_result_count=50,
        in_tool_loop=True,
    )

    assert score_request(facts).value == 100


# Properties

CUE_WORDS = [
    "hi", "thanks", "plan", "planet", "explain", "design", "trade-offs",
    "implement", "write a function", "think hard", "ultrathink", "```",
    "step by step", "root cause", "debug", "the", "code", "\n", "!",
]  # fmt: skip

TOOL_NAMES = CLAUDE_CODE_TOOLS + ["read_file", "str_replace_based_edit_tool", ""]

texts = st.one_of(
    st.text(max_size=300),
    st.lists(st.sampled_from(CUE_WORDS), max_size=40).map(" ".join),
    st.integers(0, 600_000).map(lambda n: "x" * n),
)

request_facts = st.builds(
    RequestFacts,
    model=st.text(max_size=20),
    stream=st.booleans(),
    output_cap=st.none() | st.integers(0, 1_000_000),
    text=texts,
    last_user_text=texts,
    message_count=st.integers(0, 10_000),
    tool_names=st.lists(st.sampled_from(TOOL_NAMES) | st.text(max_size=30)),
    tool_result_count=st.integers(0, 10_000),
    in_tool_loop=st.booleans(),
    image_count=st.integers(0, 20),
)


@given(request_facts)
def test_value_within_0_and_100(facts: RequestFacts) -> None:
    """The value stays within 0 and 100 for any request."""
    score = score_request(facts)

    assert 0 <= score.value <= 100
    assert score.forced_tier in (None, "SIMPLE", "REASONING")


@given(request_facts, st.lists(st.sampled_from(SHELL_TOOLS), min_size=1))
def test_shell_tools_never_lower_score(
    facts: RequestFacts, shell_tools: list[str]
) -> None:
    """Adding shell tools to a request never lowers its value."""
    before = score_request(facts)
    more_tools = dataclasses.replace(
        facts, tool_names=facts.tool_names + shell_tools
    )

    after = score_request(more_tools)

    assert after.value >= before.value


@given(request_facts)
def test_score_deterministic(facts: RequestFacts) -> None:
    """Scoring the same request twice, or a copy of it, gives the same Score."""
    copy = dataclasses.replace(facts, tool_names=list(facts.tool_names))

    first = score_request(facts)
    second = score_request(facts)
    from_copy = score_request(copy)

    assert first == second
    assert first == from_copy
