"""`prfaas bench model` smoke test on the tiny preset: one JSON object with every figure."""

from __future__ import annotations

import json
from pathlib import Path

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


def test_bench_model_on_a_checkpoint_reports_the_caches_sizes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--model DIR`: a tiny random Qwen3.5 checkpoint loaded as fp32 (`--dtype`); the KV and
    state sizes the model reports equal the allocated cache tensors' and config.json's shapes."""
    pytest.importorskip("transformers")
    from hf_fixtures import make_checkpoint

    root = make_checkpoint(tmp_path / "qwen35-tiny")
    argv = ["bench", "model", "--model", str(root), "--dtype", "float32", "--json"]
    argv += ["--device", "cpu", "--prompt-lengths", "128", "--quick"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    hf = json.loads((root / "config.json").read_text())
    full_layers = hf["layer_types"].count("full_attention")
    expected_kv = full_layers * 2 * hf["num_key_value_heads"] * hf["head_dim"] * 4  # fp32
    assert result["model"] == "qwen35-tiny" and result["dtype"] == "float32"
    assert result["kv_bytes_per_token"] == expected_kv
    assert result["cache_tensor_bytes"]["kv_bytes_per_token"] == expected_kv
    measured_state = result["cache_tensor_bytes"]["state_bytes_per_request"]
    assert result["state_bytes_per_request"] == measured_state > 0
    assert [r["tokens"] for r in result["prefill"]] == [128]
    for row in result["prefill"] + result["decode"]:
        assert row["tokens_per_s"] > 0 and row["fraction_of_ceiling"] > 0
    for row in result["decode"]:
        assert row["bytes_read"]["kv"] == row["batch"] * (row["context"] + 1) * expected_kv


def test_weight_flops_count_every_non_embedding_parameter_once_with_tied_head(
    tmp_path: Path,
) -> None:
    """FLOPs per token from weights: 2 x every parameter but the [V, d] embedding/head matrix
    (Qwen3.5's head is tied: `num_params` counts the matrix once, so it is subtracted once)."""
    pytest.importorskip("transformers")
    from hf_fixtures import make_checkpoint

    from prfaas.model.hf_checkpoint import load_hf_model
    from prfaas.tools.benchmarks.model import _weight_flops_per_token

    model, _ = load_hf_model(make_checkpoint(tmp_path / "tied"), dtype="float32")
    assert model.config.tie_embeddings
    body = sum(
        p.numel()
        for name, p in model.named_parameters()
        if name not in ("embed.weight", "lm_head.weight")
    )
    assert _weight_flops_per_token(model.config) == 2 * body
