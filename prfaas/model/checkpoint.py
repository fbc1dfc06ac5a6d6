"""safetensors checkpoints with the `HybridConfig` embedded in the file's metadata."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from prfaas.model.config import HybridConfig
from prfaas.model.hybrid import HybridModel

CONFIG_KEY = "prfaas.hybrid_config"


class ConfigMismatchError(ValueError):
    """A checkpoint was written for a different model shape than the one requested."""


def save_checkpoint(model: HybridModel, path: str | Path) -> None:
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(tensors, str(path), metadata={CONFIG_KEY: json.dumps(model.config.to_dict())})


def read_config(path: str | Path) -> HybridConfig:
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if CONFIG_KEY not in meta:
        raise ValueError(f"{path}: not a prfaas checkpoint (no {CONFIG_KEY} metadata)")
    return HybridConfig.from_dict(json.loads(meta[CONFIG_KEY]))


def load_checkpoint(
    path: str | Path, config: HybridConfig | None = None, device: torch.device | str = "cpu"
) -> HybridModel:
    """Build a model from a checkpoint. With `config`, the stored config must match it exactly;
    otherwise ConfigMismatchError names every differing field."""
    stored = read_config(path)
    if config is not None:
        diff = config.diff(stored)
        if diff:
            fields = ", ".join(
                f"{k} (expected {a!r}, checkpoint has {b!r})" for k, (a, b) in diff.items()
            )
            raise ConfigMismatchError(f"{path}: checkpoint config differs: {fields}")
    model = HybridModel(stored, device=device)
    model.load_state_dict(load_file(str(path), device=str(device)), strict=True)
    return model
