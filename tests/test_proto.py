"""The generated protobuf stubs are not stale (what scripts/gen_proto.py would write now).

Round-trips through the stubs would test protobuf itself; our conversions are tested where they
live (tests/test_worker_inputs.py, tests/router)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_generated_stubs_are_fresh() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_proto.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
