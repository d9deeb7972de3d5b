#!/usr/bin/env bash
# Set up, then run the whole test suite. Arguments go to pytest, e.g.
# `scripts/test.sh -m "not client"` to skip the Claude Code CLI test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

if [ -z "${LYNKR_CLAUDE_BIN:-}" ]; then
    LYNKR_CLAUDE_BIN=$(tests/install_claude_code.sh "$HOME/.cache/lynkr-extproc/claude-code")
    export LYNKR_CLAUDE_BIN
fi
exec .venv/bin/python -m pytest -q "$@"
