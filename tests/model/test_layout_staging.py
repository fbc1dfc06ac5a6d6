"""Staging a layer through a host buffer (the device-cache transfer path) on CPU caches: the bytes
equal the zero-copy segments, and installing them reproduces the cache."""

from __future__ import annotations

import torch
from model_helpers import make_cache, new_seq, prompt

from prfaas.model import HybridModel
from prfaas.model.layout import install_staged, pack_layer, stage_layer


def test_stage_then_install_round_trips_every_layer(tiny: HybridModel) -> None:
    src = make_cache(tiny, num_blocks=4, num_slots=1)
    dst = make_cache(tiny, num_blocks=8, num_slots=2)
    s_seq, d_seq = new_seq(src, 0, 150, 0), new_seq(dst, 4, 150, 1)
    tiny.prefill(prompt(150, seed=4), src, s_seq)
    s_seq.num_tokens = d_seq.num_tokens = 150
    reuse = torch.empty(1 << 20, dtype=torch.uint8)
    for layer in range(tiny.config.num_layers):
        staged = stage_layer(src, layer, s_seq, out=reuse)
        assert bytes(staged.numpy()) == pack_layer(src, layer, s_seq)
        install_staged(dst, layer, d_seq, staged.clone())
        assert pack_layer(dst, layer, d_seq) == pack_layer(src, layer, s_seq)
    tok = torch.tensor([7])
    assert torch.equal(tiny.decode(tok, dst, [d_seq]), tiny.decode(tok, src, [s_seq]))
