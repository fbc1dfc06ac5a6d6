"""torch-facing wrappers of the native decode kernels (decode_kernels.c), with their guards.

Each wrapper checks dtypes, devices, contiguity and shapes before handing raw pointers to C, so a
wrong call raises instead of reading out of bounds. `usable(...)` says whether the native path
applies (fp32 CPU tensors and a loaded library); callers fall back to the torch ops otherwise.
"""

from __future__ import annotations

import torch
from torch import Tensor

from prfaas.model.ops.native.loader import library


def usable(*tensors: Tensor) -> bool:
    """True when every tensor is fp32 on CPU and the kernels are built."""
    ok = all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors)
    return ok and library() is not None


def _check(t: Tensor, name: str, dtype: torch.dtype, shape: tuple[int, ...] | None = None) -> None:
    if t.device.type != "cpu" or t.dtype != dtype or not t.is_contiguous():
        raise ValueError(f"{name}: need a contiguous CPU {dtype} tensor, got {t.dtype} {t.device}")
    if shape is not None and tuple(t.shape) != shape:
        raise ValueError(f"{name}: shape {tuple(t.shape)}, expected {shape}")


def _lib():
    lib = library()
    if lib is None:
        raise RuntimeError("native decode kernels are not available")
    return lib


def exp_nonpositive(x: Tensor) -> Tensor:
    """The attention kernel's e^x (x <= 0), exposed so tests can bound its error against expf."""
    _check(x, "x", torch.float32)
    y = torch.empty_like(x)
    _lib().exp_nonpositive_f32(x.data_ptr(), y.data_ptr(), x.numel())
    return y


def sigmoid(x: Tensor, *, silu: bool = False) -> Tensor:
    """The fused step's sigmoid (or SiLU: x · sigmoid(x)), exposed so tests can compare it with
    torch's."""
    _check(x, "x", torch.float32)
    y = torch.empty_like(x)
    _lib().sigmoid_f32(x.data_ptr(), y.data_ptr(), x.numel(), int(silu))
    return y


def paged_decode_attention_native(q: Tensor, kv: Tensor, tables: Tensor, lengths: Tensor) -> Tensor:
    """Same contract as ops.attention.paged_decode_attention, tables as a padded tensor.

    q [B, Hq, d] fp32; kv [num_blocks, block_size, 2, Hkv, d] fp32; tables [B, W] int64 block ids
    (row b covers lengths[b] tokens); lengths [B] int64 >= 1. Returns [B, Hq, d].
    """
    B, Hq, d = q.shape
    num_blocks, block_size, two, Hkv, d_kv = kv.shape
    if two != 2 or d_kv != d or Hq % Hkv:
        raise ValueError(f"q {tuple(q.shape)} does not match kv {tuple(kv.shape)}")
    _check(q, "q", torch.float32)
    _check(kv, "kv", torch.float32)
    _check(tables, "tables", torch.int64)
    _check(lengths, "lengths", torch.int64, (B,))
    if tables.dim() != 2 or tables.shape[0] != B:
        raise ValueError(f"tables {tuple(tables.shape)} for batch {B}")
    if B:
        need = (lengths + block_size - 1) // block_size
        if int(lengths.min()) < 1 or int(need.max()) > tables.shape[1]:
            raise ValueError("a length is < 1 or past its block table")
        used = torch.arange(tables.shape[1])[None, :] < need[:, None]
        ids = tables[used]
        if int(ids.min()) < 0 or int(ids.max()) >= num_blocks:
            raise ValueError(f"block id outside [0, {num_blocks})")
    out = torch.empty_like(q)
    rc = _lib().paged_decode_attention_f32(
        q.data_ptr(), kv.data_ptr(), tables.data_ptr(), tables.shape[1], lengths.data_ptr(),
        B, Hq, Hkv, d, block_size, d**-0.5, out.data_ptr(),
    )  # fmt: skip
    if rc:
        raise MemoryError("paged_decode_attention_f32: allocation failed")
    return out


def gdn_decode_step_native(
    q: Tensor, k: Tensor, v: Tensor, beta: Tensor, g: Tensor, state: Tensor, slots: Tensor
) -> Tensor:
    """recurrent_gated_delta_rule_step with the states updated in place in the cache.

    q, k [B, H, d_k]; v [B, H, d_v]; beta, g [B, H] (all fp32); state [num_slots, H, d_k, d_v]
    fp32, request b's state in row slots[b] (int64 [B], distinct). Returns o [B, H, d_v].
    """
    B, H, dk = q.shape
    dv = v.shape[-1]
    for t, name, shape in ((q, "q", (B, H, dk)), (k, "k", (B, H, dk)), (v, "v", (B, H, dv))):
        _check(t, name, torch.float32, shape)
    _check(beta, "beta", torch.float32, (B, H))
    _check(g, "g", torch.float32, (B, H))
    _check(state, "state", torch.float32, (state.shape[0], H, dk, dv))
    _check(slots, "slots", torch.int64, (B,))
    if B and (int(slots.min()) < 0 or int(slots.max()) >= state.shape[0]):
        raise ValueError(f"slot outside [0, {state.shape[0]})")
    out = torch.empty_like(v)
    rc = _lib().gdn_decode_step_f32(
        q.data_ptr(), k.data_ptr(), v.data_ptr(), beta.data_ptr(), g.data_ptr(),
        state.data_ptr(), slots.data_ptr(), B, H, dk, dv, out.data_ptr(),
    )  # fmt: skip
    if rc:
        raise MemoryError("gdn_decode_step_f32: allocation failed")
    return out


def kv_dequant_rows_native(encoded: Tensor, lut: Tensor, out: Tensor) -> None:
    """kv_codec's decode of uint8 [n, E + E/16] encoded rows into fp32 out [n, E], in C."""
    n, e = out.shape
    _check(out, "out", torch.float32)
    _check(lut, "lut", torch.float32, (256,))
    _check(encoded, "encoded", torch.uint8, (n, e + 4 * (e // 64)))
    if _lib().kv_dequant_rows_f32(
        encoded.data_ptr(), n, e, encoded.shape[1], lut.data_ptr(), out.data_ptr()
    ):
        raise ValueError(f"rows of {e} elements are not groups of 64")
