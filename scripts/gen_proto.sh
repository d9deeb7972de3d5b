#!/usr/bin/env bash
# Generate the Python code of the admin API from proto/lynkr/admin/v1/admin.proto.
#
#   scripts/gen_proto.sh [OUTPUT_DIR]    default: lynkr_extproc/admin/v1
#
# Uses grpcio-tools from the test extra (pinned in pyproject.toml, so the
# output is the same on every machine); PYTHON selects the interpreter,
# .venv/bin/python by default. tests/test_admin_proto.py runs this into a
# temporary folder and compares the result with the checked-in files.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-.venv/bin/python}
output=${1:-lynkr_extproc/admin/v1}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$python" -m grpc_tools.protoc \
    --proto_path=proto \
    --python_out="$work" \
    --pyi_out="$work" \
    --grpc_python_out="$work" \
    lynkr/admin/v1/admin.proto

# protoc names imports after the proto path (lynkr.admin.v1); the code
# lives in the lynkr_extproc package instead.
sed -i 's/^from lynkr\.admin\.v1 import /from lynkr_extproc.admin.v1 import /' \
    "$work/lynkr/admin/v1/admin_pb2_grpc.py"

mkdir -p "$output"
for name in admin_pb2.py admin_pb2.pyi admin_pb2_grpc.py; do
    cp "$work/lynkr/admin/v1/$name" "$output/$name"
done
