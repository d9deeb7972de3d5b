"""The checked-in admin API code is what scripts/gen_proto.sh makes from admin.proto."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GENERATED = ROOT / "lynkr_extproc" / "admin" / "v1"
FILES = ("admin_pb2.py", "admin_pb2.pyi", "admin_pb2_grpc.py")


def test_generated_code_matches_proto(tmp_path: Path):
    """Regenerating into a temporary folder gives the checked-in files byte for byte."""
    result = subprocess.run(
        [str(ROOT / "scripts" / "gen_proto.sh"), str(tmp_path)],
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for name in FILES:
        fresh = (tmp_path / name).read_bytes()
        checked_in = (GENERATED / name).read_bytes()
        assert fresh == checked_in, (
            f"{name} differs from admin.proto; run scripts/gen_proto.sh"
        )


def test_generated_code_imports_from_package():
    """The gRPC module imports its messages from lynkr_extproc, not a top-level lynkr package."""
    text = (GENERATED / "admin_pb2_grpc.py").read_text()
    assert "from lynkr_extproc.admin.v1 import admin_pb2" in text
    assert "from lynkr.admin" not in text
