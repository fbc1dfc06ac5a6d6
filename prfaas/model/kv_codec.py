"""Lossy codec for full-attention KV on the line: FP8 (e4m3) or int8 codes with per-group scales.

Encoded row (one token of one full-attention layer, `E = 2 * n_kv_heads * head_dim` elements of the
model dtype, K then V as in the cache):

    codes  u8[E]            fp8 e4m3fn bit patterns, or int8 two's complement
    scales f32[E / GROUP]   little-endian; element e decodes as code[e] * scales[e // GROUP]

Rows are concatenated token-major, so token t of a layer starts at byte t * encoded_row_bytes and a
token range can be encoded and shipped as soon as prefill produced it.

Scale granularity: GROUP = 64 consecutive elements of one token row (not a cache block of tokens).
Why: the prefill shipper hands over token ranges as chunks finish, at any token boundary, so a
scale shared across tokens would force it to hold back or re-send partial blocks; and 64 divides
every head_dim the models use (64, 128, 256), so a group never straddles two heads and each head's
K or V keeps its own dynamic range (K has outlier heads). Cost: 4 scale bytes per 64 codes.

Scale = absmax / QMAX (448 for e4m3, 127 for int8); an all-zero group has scale 0 and decodes to 0.
The naive oracle is `kv_codec_reference.py`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from prfaas.model.ops.native import kernels as native

GROUP = 64
SCALE_BYTES = 4
SCHEMES = ("fp8", "int8")
QMAX = {"fp8": 448.0, "int8": 127.0}
CODE_DTYPES = {"fp8": torch.float8_e4m3fn, "int8": torch.int8}
# The value of each of the 256 codes (fp32): the native decode's lookup table.
CODE_VALUES = {
    s: torch.arange(256, dtype=torch.uint8).view(d).float() for s, d in CODE_DTYPES.items()
}


def encoded_row_bytes(row_elements: int) -> int:
    """Bytes of one encoded token row of `row_elements` model-dtype elements."""
    if row_elements % GROUP:
        raise ValueError(f"a KV row of {row_elements} elements is not a multiple of {GROUP}")
    return row_elements + (row_elements // GROUP) * SCALE_BYTES


def encode_rows(rows: Tensor, scheme: str) -> Tensor:
    """rows: [n, E] floating (any float dtype, CPU) -> uint8 [n, encoded_row_bytes(E)]."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown KV compression {scheme!r}")
    n, e = rows.shape
    out = torch.empty(n, encoded_row_bytes(e), dtype=torch.uint8)
    groups = rows.reshape(n, e // GROUP, GROUP).float()  # [n, G, GROUP] fp32
    scale = groups.abs().amax(dim=2) / QMAX[scheme]  # [n, G]
    safe = torch.where(scale > 0, scale, torch.ones_like(scale)).unsqueeze(2)
    scaled = groups / safe  # an all-zero group divides by 1 and stays 0
    if scheme == "fp8":
        codes = scaled.to(torch.float8_e4m3fn).view(torch.uint8)
    else:
        codes = scaled.round_().clamp_(-127.0, 127.0).to(torch.int8).view(torch.uint8)
    out[:, :e].copy_(codes.reshape(n, e))
    out[:, e:].copy_(scale.view(torch.uint8))
    return out


def decode_rows(encoded: Tensor, out: Tensor, scheme: str, *, allow_native: bool = True) -> None:
    """encoded: uint8 [n, encoded_row_bytes(E)]; writes the decoded values into out: [n, E].
    A contiguous fp32 `out` is decoded by the native kernel (one pass, a 256-entry table; the same
    bits as the torch path, which stays for other dtypes and as its oracle)."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown KV compression {scheme!r}")
    n, e = out.shape
    if encoded.shape != (n, encoded_row_bytes(e)) or encoded.dtype != torch.uint8:
        raise ValueError(f"encoded rows {tuple(encoded.shape)} do not fit a [{n}, {e}] destination")
    if allow_native and native.usable(out) and out.is_contiguous() and encoded.is_contiguous():
        native.kv_dequant_rows_native(encoded, CODE_VALUES[scheme], out)
        return
    code_dtype = CODE_DTYPES[scheme]
    codes = encoded[:, :e].contiguous().view(code_dtype).float().reshape(n, e // GROUP, GROUP)
    scale = encoded[:, e:].contiguous().view(torch.float32)  # [n, G]
    out.copy_((codes * scale.unsqueeze(2)).reshape(n, e))
