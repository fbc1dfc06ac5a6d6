"""Presets and derived sizes (hybrid_model.md §4.2)."""

from __future__ import annotations

import dataclasses

import pytest

from prfaas.model import HybridConfig, get_preset


def test_small_preset_sizes() -> None:
    c = get_preset("small")
    assert c.full_layers == [3, 7] and c.linear_layers == [0, 1, 2, 4, 5, 6]
    assert c.kv_bytes_per_token == 2048
    assert c.state_bytes_per_request == 448_512
    assert 7.0e6 < c.num_params < 7.2e6


def test_large_preset_sizes() -> None:
    c = get_preset("large")
    assert c.kv_bytes_per_token == 12_288
    assert c.recurrent_bytes_per_layer * len(c.linear_layers) == 36 * 2**20
    assert 1.55e9 < c.num_params < 1.65e9


def test_round_trip_and_errors() -> None:
    c = dataclasses.replace(get_preset("tiny"), seed=5)
    assert HybridConfig.from_dict(c.to_dict()) == c
    assert c.diff(dataclasses.replace(c, d_model=64)) == {"d_model": (128, 64)}
    with pytest.raises(ValueError, match="unknown preset"):
        get_preset("huge")
    with pytest.raises(ValueError):
        HybridConfig(layer_pattern="GXF")
