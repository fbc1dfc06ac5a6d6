"""Chunked and one-step GDN and the short conv against their token-by-token definitions."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from prfaas.model.ops.linear_attn import (
    causal_conv_prefill,
    causal_conv_ref,
    causal_conv_update,
    chunk_gated_delta_rule,
    recurrent_gated_delta_rule_ref,
    recurrent_gated_delta_rule_step,
)


def _inputs(T: int, dtype: torch.dtype, H: int = 3, dk: int = 16, dv: int = 8):
    g = torch.Generator().manual_seed(T)
    q = F.normalize(torch.randn(T, H, dk, generator=g, dtype=dtype), dim=-1) * dk**-0.5
    k = F.normalize(torch.randn(T, H, dk, generator=g, dtype=dtype), dim=-1)
    v = torch.randn(T, H, dv, generator=g, dtype=dtype)
    beta = torch.rand(T, H, generator=g, dtype=dtype)
    logg = F.logsigmoid(torch.randn(T, H, generator=g, dtype=dtype))
    s0 = torch.randn(H, dk, dv, generator=g, dtype=dtype)
    return q, k, v, beta, logg, s0


@pytest.mark.parametrize("T", [1, 63, 65, 200])
@pytest.mark.parametrize(("dtype", "atol"), [(torch.float32, 1e-5), (torch.float64, 1e-12)])
def test_chunk_matches_recurrent_definition(T: int, dtype: torch.dtype, atol: float) -> None:
    q, k, v, beta, g, s0 = _inputs(T, dtype)
    o_ref, s_ref = recurrent_gated_delta_rule_ref(q, k, v, beta, g, s0)
    for start in (0, 37):  # 37: run starts off the chunk grid (front padding)
        o, s, _ = chunk_gated_delta_rule(q, k, v, beta, g, s0, start_pos=start)
        torch.testing.assert_close(o, o_ref, atol=atol, rtol=atol * 10)
        torch.testing.assert_close(s, s_ref, atol=atol, rtol=atol * 10)


def test_chunk_checkpoints_equal_state_of_prefix() -> None:
    q, k, v, beta, g, s0 = _inputs(200, torch.float64)
    _, _, ckpts = chunk_gated_delta_rule(q, k, v, beta, g, s0, checkpoint_positions=[64, 192])
    for p, got in zip([64, 192], ckpts, strict=True):
        _, want = recurrent_gated_delta_rule_ref(q[:p], k[:p], v[:p], beta[:p], g[:p], s0)
        torch.testing.assert_close(got, want, atol=1e-12, rtol=0)
    with pytest.raises(ValueError, match="chunk end"):
        chunk_gated_delta_rule(q, k, v, beta, g, s0, checkpoint_positions=[100])


def test_one_step_matches_definition_batched() -> None:
    q, k, v, beta, g, s0 = _inputs(5, torch.float32)
    # Treat the 5 tokens as a batch of 5 independent requests, each with state s0 * (b+1).
    states = torch.stack([s0 * (b + 1) for b in range(5)])
    o, s = recurrent_gated_delta_rule_step(q, k, v, beta, g, states)
    for b in range(5):
        sl = slice(b, b + 1)
        o_ref, s_ref = recurrent_gated_delta_rule_ref(
            q[sl], k[sl], v[sl], beta[sl], g[sl], states[b]
        )
        torch.testing.assert_close(o[b], o_ref[0], atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(s[b], s_ref, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("T", [1, 2, 3, 4, 10])
def test_conv_prefill_then_update_matches_definition(T: int) -> None:
    gen = torch.Generator().manual_seed(1)
    D, K = 6, 4
    w = torch.randn(D, K, generator=gen)
    x = torch.randn(T + 2, D, generator=gen)
    state0 = torch.randn(D, K - 1, generator=gen)
    y_ref, s_ref = causal_conv_ref(x, w, state0)
    y, s, _ = causal_conv_prefill(x[:T], w, state0)
    torch.testing.assert_close(y, y_ref[:T], atol=1e-6, rtol=1e-5)
    for t in range(T, T + 2):
        yt, s = causal_conv_update(x[t : t + 1], w, s.unsqueeze(0))
        s = s[0]
        torch.testing.assert_close(yt[0], y_ref[t], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(s, s_ref)


def test_conv_state_of_short_prompt_keeps_zero_padding() -> None:
    # A 2-token prompt (< K-1) from the empty state: the state is [0, x0, x1] per channel.
    w = torch.randn(3, 4)
    x = torch.randn(2, 3)
    _, s, ckpt = causal_conv_prefill(x, w, torch.zeros(3, 3), [1])
    torch.testing.assert_close(s, torch.cat([torch.zeros(3, 1), x.t()], dim=1))
    torch.testing.assert_close(ckpt[0], torch.cat([torch.zeros(3, 2), x[:1].t()], dim=1))
