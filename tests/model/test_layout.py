"""Byte layout: zero-copy views, declared sizes, and cache -> bytes -> cache round trips."""

from __future__ import annotations

import torch
from model_helpers import make_cache, new_seq, prompt

from prfaas.model import HybridModel, SeqCache
from prfaas.model.layout import install_request, layer_segments, pack_request, transfer_layout


def _greedy(model, cache, seq, first: int, steps: int) -> list[int]:
    out, tok = [], first
    for _ in range(steps):
        logits = model.decode(torch.tensor([tok]), cache, [seq])[0]
        seq.num_tokens += 1
        tok = int(logits.argmax())
        out.append(tok)
    return out


def test_layout_sizes_match_segments_and_config(tiny: HybridModel) -> None:
    c = tiny.config
    cache = make_cache(tiny)
    seq = SeqCache([3, 0, 7], 2, 150)
    specs = transfer_layout(c, 150)
    assert [s.name for s in specs] == ["L00.state", "L01.state", "L02.state", "L03.kv"]
    for layer, spec in enumerate(specs):
        segs = layer_segments(cache, layer, seq)
        assert sum(s.nbytes for s in segs) == spec.nbytes
    assert specs[3].nbytes == 150 * c.kv_bytes_per_token
    assert sum(s.nbytes for s in specs[:3]) == c.state_bytes_per_request
    # Tokens [100, 150) touch blocks 0 (tokens 64..127) and 7 (128..149): two segments.
    assert [s.nbytes for s in layer_segments(cache, 3, seq, 100, 150)] == [
        28 * c.kv_bytes_per_token_layer,
        22 * c.kv_bytes_per_token_layer,
    ]


def test_segments_are_writable_views_not_copies(tiny: HybridModel) -> None:
    cache = make_cache(tiny)
    seq = SeqCache([1], 0, 10)
    kv_seg = layer_segments(cache, 3, seq, 2, 3)[0]
    kv_seg[:] = bytes(kv_seg.nbytes)
    assert torch.equal(cache.kv[0][1, 2], torch.zeros_like(cache.kv[0][1, 2]))
    rec_seg, conv_seg = layer_segments(cache, 0, seq)
    conv_seg[:] = bytes(conv_seg.nbytes)
    assert torch.equal(cache.conv[0][0], torch.zeros_like(cache.conv[0][0]))
    assert torch.isnan(cache.recurrent[0][0]).all()


def test_round_trip_is_bit_exact_and_decode_identical(tiny: HybridModel) -> None:
    tokens = prompt(150)
    src = make_cache(tiny)
    seq = new_seq(src, 0, 170, 0)
    first = int(tiny.prefill(tokens, src, seq).argmax())
    seq.num_tokens = 150
    buffers = pack_request(src, seq)
    assert [len(b) for b in buffers] == [s.nbytes for s in transfer_layout(tiny.config, 150)]

    dst = make_cache(tiny)
    dst_seq = SeqCache([9, 4, 12], 3, 150)
    install_request(dst, dst_seq, buffers)
    assert pack_request(dst, dst_seq) == buffers
    for (ra, ca), (rb, cb) in zip(src.read_state(0), dst.read_state(3), strict=True):
        assert torch.equal(ra, rb) and torch.equal(ca, cb)
    assert _greedy(tiny, src, seq, first, 8) == _greedy(tiny, dst, dst_seq, first, 8)
