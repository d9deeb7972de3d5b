#!/usr/bin/env bash
# Install what the benchmark needs, then run bench/run.py with the given
# arguments. It runs from any folder. It needs root for apt-get, Redis on
# 127.0.0.1:6379 and PostgreSQL on 127.0.0.1:5432 (database test).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v wrk >/dev/null; then
    apt-get update -qq && apt-get install -y -qq wrk
fi
if [ ! -x .venv/bin/python ]; then
    echo "bench/run.sh: .venv is missing; run scripts/setup.sh once to create it" >&2
    exit 2
fi
# Benchmark-only tools: kept out of pyproject.toml on purpose.
.venv/bin/python -c 'import matplotlib, h2' 2>/dev/null \
    || .venv/bin/pip install -q matplotlib h2
[ -x .venv/bin/py-spy ] || .venv/bin/pip install -q py-spy
# LiteLLM gets its own environment, so that its pins never touch ours.
if [ ! -x bench/.venv-litellm/bin/litellm ]; then
    python3 -m venv bench/.venv-litellm
    bench/.venv-litellm/bin/pip install -q 'litellm[proxy]'
fi

export BENCH_COMMAND="bench/run.sh${*:+ $*}"
exec env -u PYTHONDONTWRITEBYTECODE .venv/bin/python bench/run.py "$@"
