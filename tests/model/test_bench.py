"""`prfaas bench model` smoke test on the tiny preset: one JSON object with every figure."""

from __future__ import annotations

import json

import pytest

from prfaas.cli import main


def test_bench_model_quick_json(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["bench", "model", "--preset", "tiny", "--quick", "--json", "--device", "cpu"]
    assert main([*argv, "--compare-torch"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [r["tokens"] for r in result["prefill"]] == [256, 1024]
    assert [r["batch"] for r in result["decode"]] == [1, 8, 32]
    assert result["kv_bytes_per_token"] == 512
    assert result["matmul_ceiling_flops_per_s"] > 0
    for row in result["prefill"] + result["decode"]:
        assert row["tokens_per_s"] > 0 and row["fraction_of_ceiling"] > 0
    # Decode rows carry the bytes a step must read and the fraction of the same run's bandwidth.
    assert result["read_bandwidth_bytes_per_s"] > 0
    for row in result["decode"]:
        need = row["bytes_read"]
        assert need["kv"] == row["batch"] * (row["context"] + 1) * 512
        assert need["total"] == need["weights"] + need["kv"] + need["state"]
        assert row["fraction_of_read_bandwidth"] > 0
        assert row["speedup_vs_torch_path"] > 0
    assert [r["batch"] for r in result["decode_torch_path"]] == [1, 8, 32]
