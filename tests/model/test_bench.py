"""`prfaas bench model` smoke test on the tiny preset: one JSON object with every figure."""

from __future__ import annotations

import json

import pytest

from prfaas.cli import main


def test_bench_model_quick_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "model", "--preset", "tiny", "--quick", "--json", "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [r["tokens"] for r in result["prefill"]] == [256, 1024]
    assert [r["batch"] for r in result["decode"]] == [1, 8, 32]
    assert result["kv_bytes_per_token"] == 512
    assert result["matmul_ceiling_flops_per_s"] > 0
    for row in result["prefill"] + result["decode"]:
        assert row["tokens_per_s"] > 0 and row["fraction_of_ceiling"] > 0
