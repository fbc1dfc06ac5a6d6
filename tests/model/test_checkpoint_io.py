"""safetensors checkpoint round trip and config mismatch errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from model_helpers import prompt

from prfaas.model import HybridModel, get_preset
from prfaas.model.checkpoint import ConfigMismatchError, load_checkpoint, save_checkpoint
from prfaas.model.reference import naive_forward


def test_save_load_round_trip(tiny: HybridModel, tmp_path: Path) -> None:
    path = tmp_path / "tiny.safetensors"
    save_checkpoint(tiny, path)
    loaded = load_checkpoint(path, tiny.config)
    assert loaded.config == tiny.config
    for (name, a), (_, b) in zip(
        tiny.state_dict().items(), loaded.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    assert torch.equal(naive_forward(loaded, prompt(5)), naive_forward(tiny, prompt(5)))


def test_different_seed_gives_different_weights_and_load_restores_them(tmp_path: Path) -> None:
    other = HybridModel(dataclasses.replace(get_preset("tiny"), seed=1))
    path = tmp_path / "seed1.safetensors"
    save_checkpoint(other, path)
    assert not torch.equal(other.embed.weight, HybridModel(get_preset("tiny")).embed.weight)
    assert torch.equal(load_checkpoint(path).embed.weight, other.embed.weight)


def test_config_mismatch_names_fields(tiny: HybridModel, tmp_path: Path) -> None:
    path = tmp_path / "tiny.safetensors"
    save_checkpoint(tiny, path)
    wanted = dataclasses.replace(tiny.config, d_model=256, ffn_dim=704)
    with pytest.raises(ConfigMismatchError, match=r"d_model.*ffn_dim"):
        load_checkpoint(path, wanted)
