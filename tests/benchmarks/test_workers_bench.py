"""`prfaas bench workers --quick` end to end: real worker processes, tiny model, short prompts."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_workers_bench_quick_json() -> None:
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "prfaas.cli", "bench", "workers", "--quick", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    res = json.loads(proc.stdout)
    assert res["preset"] == "tiny" and len(res["loadavg_start"]) == 3
    inter, remote = res["interference"], res["remote"]
    for key in ("itl_p50_ms_base", "itl_p99_ms_base", "itl_p50_ms_prefill", "itl_p99_ms_prefill"):
        assert inter[key] > 0, key
    for key in ("itl_p50_ratio", "itl_p99_ratio", "prefill_slowdown"):
        assert math.isfinite(inter[key]) and inter[key] > 0, key
    assert inter["prefill_alone_s"] > 0 and inter["prefill_with_decodes_s"] > 0
    assert inter["tokens_during_prefill"] > 0 and inter["tokens_base"] > 0
    for key in ("prefill_s", "transfer_s", "goodput_mb_s", "one_layer_s", "ttft_remote_s"):
        assert remote[key] > 0, key
    assert remote["exposed_s"] >= 0 and remote["transfer_s"] >= remote["exposed_s"]
    assert remote["bytes_sent"] > remote["layer_bytes"] > 0
    assert math.isfinite(remote["exposed_over_one_layer"]) and remote["exposed_over_one_layer"] >= 0
    assert math.isfinite(remote["ttft_ratio"]) and remote["ttft_ratio"] > 0
    assert isinstance(remote["goal_met"], bool)
