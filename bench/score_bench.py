"""Measure score_request on a generated 50 KB request.

Run from the repository root:

    python bench/score_bench.py

Prints the mean time per call in microseconds over 2,000 calls, after one
warm-up call that fills the tool-name cache.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

# Import the package from this checkout, which need not be installed.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lynkr_extproc.formats.base import RequestFacts  # noqa: E402
from lynkr_extproc.routing.score import score_request  # noqa: E402

CALLS = 2_000
REQUEST_CHARS = 50_000
LAST_USER_CHARS = 12_000

TOOL_NAMES = [
    "Task", "Bash", "Glob", "Grep", "LS", "ExitPlanMode", "Read", "Edit",
    "MultiEdit", "Write", "NotebookEdit", "WebFetch", "TodoWrite",
    "WebSearch", "BashOutput", "KillShell",
]  # fmt: skip

PARAGRAPH = (
    "The service reads the request body, looks up the tenant budget and "
    "forwards the call to the chosen upstream model. Here is the handler:\n"
    "```python\ndef handle(request):\n    return route(request)\n```\n"
)


def build_request() -> RequestFacts:
    """Build a 50 KB request whose last user message exceeds the cue window."""
    repeats = REQUEST_CHARS // len(PARAGRAPH) + 1
    text = (PARAGRAPH * repeats)[:REQUEST_CHARS]
    last_user_text = (
        "Please refactor the handler below and explain the trade-offs.\n"
        + text[-LAST_USER_CHARS:]
    )
    return RequestFacts(
        model="claude-sonnet-4-5",
        stream=True,
        output_cap=8_192,
        text=text,
        last_user_text=last_user_text,
        message_count=20,
        tool_names=TOOL_NAMES,
        tool_result_count=3,
        in_tool_loop=False,
    )


def main() -> None:
    facts = build_request()
    score = score_request(facts)

    start = time.perf_counter()
    for _ in range(CALLS):
        score_request(facts)
    elapsed = time.perf_counter() - start

    print(f"request: {len(facts.text)} chars, score {score.value}")
    print(f"reasons: {', '.join(score.reasons)}")
    print(f"mean: {elapsed / CALLS * 1e6:.1f} us per call over {CALLS} calls")


if __name__ == "__main__":
    main()
