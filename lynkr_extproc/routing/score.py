"""Request complexity scoring for tier routing.

`score_request` turns the facts of one request into a value from 0 to 100
and the reasons behind it. Callers map the value to a tier with their own
bands. The defaults are 0-19 SIMPLE, 20-50 MEDIUM, 51-75 COMPLEX and
76-100 REASONING. The value is the sum of five capped parts, and the caps
add up to 100:

    part        cap  source
    size         25  estimated prompt tokens, on a log scale
    tools        18  offered tools, weighted by kind
    depth        10  message count, tool results, an open tool loop
    code         22  a code-generation cue, or ``` fences in the prompt
    reasoning    25  planning and reasoning cues

Without a planning or reasoning cue the value stays at or below 75, so with
the default bands only such a cue or a forcing phrase selects REASONING.

Cues are whole words or phrases, matched case-insensitively with regex word
boundaries, so "plan" matches "plans" and "planning" but not "planet" or
"explain". Cues are searched for only in the last user message, and only in
its first 2 KB and last 6 KB when it is longer than 8 KB.
"""

from __future__ import annotations

import bisect
import functools
import math
import re
from dataclasses import dataclass

from ..formats.base import RequestFacts

REASONING = "REASONING"
SIMPLE = "SIMPLE"

# Size: points at each anchor, in estimated tokens, interpolated on log10.
_SIZE_ANCHORS = ((200, 0), (2_000, 10), (20_000, 20), (100_000, 25))

# Tools: points per offered tool by kind, in the order reasons list them.
_TOOL_WEIGHTS = {"shell": 4, "write": 3, "other": 2, "read": 1}
_TOOLS_CAP = 18

# Depth: one point per 4 messages, one per tool result, one for an open loop.
_MESSAGES_PER_POINT = 4
_MESSAGES_CAP = 6
_TOOL_RESULTS_CAP = 3
_TOOL_LOOP_POINTS = 1

# Code: any code-generation cue reaches the cap, so a bare request to write
# code lands in the default MEDIUM band. Each ``` block adds a little.
_CODE_CUE_POINTS = 22
_FENCE_BLOCK_POINTS = 3
_CODE_CAP = 22

# Reasoning: the first distinct cue counts most, each further one adds less.
_FIRST_REASONING_CUE_POINTS = 20
_MORE_REASONING_CUE_POINTS = 3
_REASONING_CAP = 25

# Cue search window: the head and the tail of a long last user message, so
# that the cost of the cue search stops growing with the message length.
_CUE_HEAD_CHARS = 2_048
_CUE_TAIL_CHARS = 6_144

# A greeting forces SIMPLE only in a conversation this short or shorter.
_GREETING_MAX_MESSAGES = 4
_GREETING_MAX_CHARS = 80


@dataclass(frozen=True)
class Score:
    """The complexity of one request and the parts that produced it."""

    value: int
    """From 0 to 100. A higher value calls for a stronger model."""
    reasons: tuple[str, ...]
    """Short "name=value" parts, e.g. "tokens=1200", "tools=3(shell)"."""
    forced_tier: str | None
    """REASONING or SIMPLE when a phrase decides the tier, else None.

    A forced tier overrides the bands, but `value` is computed as usual.
    """


def estimate_tokens(text: str) -> int:
    """Return the estimated token count of `text`: 4 characters a token."""
    return (len(text) + 3) // 4


def _size_thresholds() -> tuple[int, ...]:
    """Build the minimum token count for each size point, 1 upward."""
    thresholds = []
    pairs = zip(_SIZE_ANCHORS, _SIZE_ANCHORS[1:])
    for (low_tokens, low_points), (high_tokens, high_points) in pairs:
        ratio = high_tokens / low_tokens
        span = high_points - low_points
        for step in range(1, span + 1):
            tokens = low_tokens * ratio ** (step / span)
            thresholds.append(math.ceil(tokens))
    return tuple(thresholds)


_SIZE_THRESHOLDS = _size_thresholds()


def _size_points(tokens: int) -> int:
    return bisect.bisect_right(_SIZE_THRESHOLDS, tokens)


def _word_set(words: str) -> frozenset[str]:
    return frozenset(words.split())


# Name parts, lowercase, that mark a tool's kind. A tool takes the heaviest
# kind any of its parts marks, and "other" when none does.
_TOOL_KIND_PARTS = {
    "shell": _word_set(
        "bash shell sh zsh pwsh powershell terminal exec execute command cmd"
        " run subprocess console"
    ),
    "write": _word_set(
        "write edit editor multiedit replace patch create delete remove move"
        " rename insert apply update overwrite save"
    ),
    "read": _word_set(
        "read view cat open get fetch list ls glob grep search find query"
        " lookup browse"
    ),
}

# Splits "str_replace_based_edit_tool", "read-file", "fs.read", "BashOutput"
# and "HTTPRequest" into their parts.
_NAME_PART = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")


@functools.lru_cache(maxsize=4096)
def _tool_kind(name: str) -> str:
    """Classify one tool name as "shell", "write", "read" or "other"."""
    parts = {part.lower() for part in _NAME_PART.findall(name)}
    for kind, kind_parts in _TOOL_KIND_PARTS.items():
        if not parts.isdisjoint(kind_parts):
            return kind
    return "other"


def _tool_points(tool_names: list[str]) -> tuple[int, str | None]:
    if not tool_names:
        return 0, None
    kinds = [_tool_kind(name) for name in tool_names]
    points = sum(_TOOL_WEIGHTS[kind] for kind in kinds)
    present = [kind for kind in _TOOL_WEIGHTS if kind in kinds]
    reason = f"tools={len(tool_names)}({','.join(present)})"
    return min(_TOOLS_CAP, points), reason


def _depth_points(facts: RequestFacts) -> tuple[int, list[str]]:
    points = 0
    reasons = []
    message_points = min(_MESSAGES_CAP, facts.message_count // _MESSAGES_PER_POINT)
    if message_points:
        points += message_points
        reasons.append(f"messages={facts.message_count}")
    result_points = min(_TOOL_RESULTS_CAP, facts.tool_result_count)
    if result_points:
        points += result_points
        reasons.append(f"tool_results={facts.tool_result_count}")
    if facts.in_tool_loop:
        points += _TOOL_LOOP_POINTS
        reasons.append("in_tool_loop")
    return points, reasons


@dataclass(frozen=True)
class _Cue:
    """One cue: a whole word or phrase searched for in the last user message."""

    kind: str
    """One of "forcing", "code" and "reasoning"."""
    name: str
    """Label used in reasons, e.g. "plan" in "cue=plan"."""
    patterns: tuple[re.Pattern[str], ...]
    """One regex per alternative. The cue matches when any of them matches."""


def _cue(kind: str, name: str, *alternatives: tuple[str, str]) -> _Cue:
    """Build a cue from (stem, rest) pairs, written in lowercase.

    Each regex starts with its literal stem, so the regex engine can skip
    straight to the places where the stem occurs. A leading \\b would hide
    that literal prefix from the engine, so the negative lookbehind after the
    stem checks the word boundary before it instead.
    """
    patterns = []
    for stem, rest in alternatives:
        literal = re.escape(stem)
        patterns.append(re.compile(rf"{literal}(?<!\w{literal})(?:{rest})\b"))
    return _Cue(kind, name, tuple(patterns))


_WRITE_CODE_REST = (
    r"\s+(?:(?:a|an|the|some|me|us)\s+)?(?:[\w+#-]+\s+){0,2}?"
    r"(?:functions?|class(?:es)?|methods?|scripts?|programs?|modules?"
    r"|tests?|code|quer(?:y|ies)|regexe?s?|endpoints?|components?)"
)
_WRITE_VERBS = ("write", "generate", "create", "add")
_FIX_BUG_REST = (
    r"\s+(?:(?:the|this|that|a|my|these|those)\s+)?"
    r"(?:bugs?|errors?|failing\s+tests?|tests?|build|crash(?:es)?)"
)

# Every cue, in the order reasons report them. A single regex alternating over
# all cues ran more than ten times slower on the request in
# bench/score_bench.py, because the engine tries every alternative at every
# position. Searching each cue on its own avoids that.
_CUE_TABLE = (
    _cue("forcing", "think_hard",
         ("think", r"(?:\s+(?:really|very|extra|super))?\s+hard(?:er)?")),
    _cue("forcing", "ultrathink", ("ultrathink", "")),
    _cue("forcing", "think_step_by_step_carefully",
         ("think", r"\s+step[\s-]+by[\s-]+step\s+carefully")),
    _cue("code", "implement", ("implement", r"s|ed|ing|ation|")),
    _cue("code", "refactor", ("refactor", r"s|ed|ing|")),
    _cue("code", "write_code", *((verb, _WRITE_CODE_REST) for verb in _WRITE_VERBS)),
    _cue("code", "fix_bug", ("fix", _FIX_BUG_REST)),
    _cue("code", "unit_test", ("unit", r"[\s-]+tests?")),
    _cue("code", "code_review", ("code", r"\s+review")),
    _cue("reasoning", "plan", ("plan", r"s|ned|ning|")),
    _cue("reasoning", "architecture", ("architect", r"s|ure|ures|ural|")),
    _cue("reasoning", "design", ("design", r"s|ed|ing|")),
    _cue("reasoning", "step_by_step", ("step", r"[\s-]+by[\s-]+step")),
    _cue("reasoning", "prove", ("prov", r"e|es|ed|en|ing"), ("proof", r"s|")),
    _cue("reasoning", "trade_offs", ("trade", r"[\s-]?offs?")),
    _cue("reasoning", "pros_and_cons", ("pros", r"\s+and\s+cons")),
    _cue("reasoning", "debug", ("debug", r"s|ged|ging|")),
    _cue("reasoning", "root_cause", ("root", r"[\s-]+caus(?:e|es|ed)")),
    _cue("reasoning", "analyze", ("analy", r"[sz](?:e|es|ed|ing|is)")),
    _cue("reasoning", "compare", ("compar", r"e|es|ed|ing|ison|isons")),
    _cue("reasoning", "evaluate", ("evaluat", r"e|es|ed|ing|ion")),
    _cue("reasoning", "investigate", ("investigat", r"e|es|ed|ing|ion")),
    _cue("reasoning", "optimize", ("optimi", r"[sz](?:e|es|ed|ing|ation)")),
    _cue("reasoning", "strategy", ("strateg", r"y|ies|ic")),
    _cue("reasoning", "edge_cases", ("edge", r"[\s-]+cases?")),
    _cue("reasoning", "think_through",
         ("think", r"\s+(?:it\s+|this\s+|that\s+)?through")),
)  # fmt: skip

# A message of nothing but greetings and thanks: "hi", "hey there", "thanks!",
# "ok, thank you so much", "hello 👋". Matched with fullmatch.
_GREETING_WORD = (
    r"(?:hi|hiya|hello|hey|howdy|greetings|good\s+(?:morning|afternoon|evening)"
    r"|thanks|thank\s+you|thx|ty|cheers|many\s+thanks|much\s+appreciated)"
    r"(?:\s+(?:there|all|everyone|so\s+much|very\s+much|a\s+lot|again))?"
)
_ACKNOWLEDGEMENT = r"(?:ok(?:ay)?|great|perfect|awesome|cool|nice)"
_GREETING = re.compile(
    rf"[\W_]*(?:{_ACKNOWLEDGEMENT}[\W_]+)?{_GREETING_WORD}"
    rf"(?:[\W_]+{_GREETING_WORD})*[\W_]*",
    re.IGNORECASE,
)
_SPACE = re.compile(r"\s")


def _cue_window(text: str) -> str:
    """Return the part of `text` searched for cues.

    A long message keeps its head, where instructions such as "ultrathink"
    often sit, and its tail, where the request often follows pasted content.
    Words cut in half at either edge are dropped, so that a cut cannot create
    a word boundary that the message does not have.
    """
    if len(text) <= _CUE_HEAD_CHARS + _CUE_TAIL_CHARS:
        return text
    head = text[:_CUE_HEAD_CHARS]
    head_end = max(head.rfind(" "), head.rfind("\n"))
    tail = text[-_CUE_TAIL_CHARS:]
    tail_start = _SPACE.search(tail)
    head = head[:head_end] if head_end >= 0 else ""
    tail = tail[tail_start.start() :] if tail_start else ""
    return head + "\n" + tail


def _find_cues(text: str) -> dict[str, list[str]]:
    """Return the distinct cues in `text` by kind, in table order."""
    window = _cue_window(text).lower()
    cues: dict[str, list[str]] = {"forcing": [], "code": [], "reasoning": []}
    for cue in _CUE_TABLE:
        if any(pattern.search(window) for pattern in cue.patterns):
            cues[cue.kind].append(cue.name)
    return cues


def _code_points(code_cues: list[str], fence_blocks: int) -> int:
    points = _CODE_CUE_POINTS if code_cues else 0
    points += _FENCE_BLOCK_POINTS * fence_blocks
    return min(_CODE_CAP, points)


def _reasoning_points(reasoning_cues: list[str]) -> int:
    if not reasoning_cues:
        return 0
    extra = len(reasoning_cues) - 1
    points = _FIRST_REASONING_CUE_POINTS + _MORE_REASONING_CUE_POINTS * extra
    return min(_REASONING_CAP, points)


def _is_greeting_only(facts: RequestFacts) -> bool:
    """Return True for a bare greeting or thanks, which any model can handle."""
    if facts.tool_names or facts.in_tool_loop or facts.image_count:
        return False
    if facts.message_count > _GREETING_MAX_MESSAGES:
        return False
    text = facts.last_user_text
    if len(text) > _GREETING_MAX_CHARS:
        return False
    return _GREETING.fullmatch(text.strip()) is not None


def _forced_tier(facts: RequestFacts, forcing_cues: list[str]) -> str | None:
    if forcing_cues:
        return REASONING
    if _is_greeting_only(facts):
        return SIMPLE
    return None


def score_request(facts: RequestFacts) -> Score:
    """Score how strong a model `facts` needs, from 0 to 100."""
    tokens = estimate_tokens(facts.text)
    points = _size_points(tokens)
    reasons = [f"tokens={tokens}"]

    tool_points, tool_reason = _tool_points(facts.tool_names)
    points += tool_points
    if tool_reason:
        reasons.append(tool_reason)

    depth_points, depth_reasons = _depth_points(facts)
    points += depth_points
    reasons.extend(depth_reasons)

    cues = _find_cues(facts.last_user_text)
    # Two fences make one block, and an unclosed fence still opens one.
    fence_blocks = (facts.text.count("```") + 1) // 2
    points += _code_points(cues["code"], fence_blocks)
    if fence_blocks:
        reasons.append(f"fences={fence_blocks}")
    reasons.extend(f"code={name}" for name in cues["code"])

    points += _reasoning_points(cues["reasoning"])
    reasons.extend(f"cue={name}" for name in cues["reasoning"])

    forced_tier = _forced_tier(facts, cues["forcing"])
    if forced_tier:
        reasons.append(f"forced={forced_tier.lower()}")
    return Score(value=points, reasons=tuple(reasons), forced_tier=forced_tier)
