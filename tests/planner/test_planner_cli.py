"""`prfaas plan`: the JSON contract, the table and plots, and the time budget."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from prfaas.data import case_study_file

CASE = case_study_file()
KEYS = {
    "lambda_max_rps": float, "lambda_work_rps": float, "n_prfaas": int, "n_prefill": int, "n_decode": int,
    "threshold_tokens": (float, type(None)), "offload_fraction": float, "egress_gbps": float,
    "theta_prfaas_rps": float, "theta_pd_prefill_rps": float, "theta_pd_decode_rps": float,
}  # fmt: skip

PROBE = (
    "import sys; from prfaas.cli import main; rc = main(sys.argv[1:]); "
    "assert 'torch' not in sys.modules and 'matplotlib' not in sys.modules, 'heavy import'; "
    "sys.exit(rc)"
)


def _plan(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-c", PROBE, "plan", "--case", str(CASE), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)


def test_json_contract_and_budget() -> None:
    start = time.monotonic()
    proc = _plan("--json")
    elapsed = time.monotonic() - start
    assert proc.returncode == 0, proc.stderr
    assert elapsed < 10.0
    out = json.loads(proc.stdout)
    assert set(out) == {"prfaas_pd", "homogeneous_pd", "naive_heterogeneous"}
    for name, row in out.items():
        assert set(row) == set(KEYS), name
        for key, typ in KEYS.items():
            assert isinstance(row[key], typ), (name, key, row[key])
    assert out["prfaas_pd"]["threshold_tokens"] is not None
    assert out["homogeneous_pd"]["threshold_tokens"] is None
    assert out["homogeneous_pd"]["offload_fraction"] == 0.0
    assert out["naive_heterogeneous"]["offload_fraction"] == 1.0
    assert out["naive_heterogeneous"]["n_prefill"] == 0
    # Mean prefill times exceed the time of the mean length (convex profiles): the work bound is
    # the lower one wherever a prefill class runs on an instance.
    for name, row in out.items():
        assert 0 < row["lambda_work_rps"] < row["lambda_max_rps"], name


def test_overrides_change_the_answer() -> None:
    base = json.loads(_plan("--json").stdout)["prfaas_pd"]
    squeezed = json.loads(_plan("--json", "--link-gbps", "5").stdout)["prfaas_pd"]
    assert squeezed["egress_gbps"] <= 5.0 + 1e-9
    assert squeezed["lambda_max_rps"] < base["lambda_max_rps"]


def test_table_and_plots(tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "prfaas.cli",
        "plan",
        "--case",
        str(CASE),
        "--out-dir",
        str(tmp_path),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "prfaas_pd" in proc.stdout and "homogeneous_pd" in proc.stdout
    pngs = sorted(p.name for p in tmp_path.glob("*.png"))
    assert pngs == ["prfaas_pd_lambda_vs_np.png", "prfaas_pd_lambda_vs_t.png"]
    assert all((tmp_path / p).stat().st_size > 1000 for p in pngs)


def test_no_case_plans_the_shipped_case_study_from_any_directory(tmp_path: Path) -> None:
    """`prfaas plan` with no --case reads the case study shipped as package data, wherever it runs."""
    cmd = [sys.executable, "-c", PROBE, "plan", "--json"]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == json.loads(_plan("--json").stdout)
