"""Naive oracle for kv_codec: one group at a time, scales from Python floats, the encoded row built
with struct. Slow; tests only. Same format as `prfaas/model/kv_codec.py` (see its docstring)."""

from __future__ import annotations

import struct

import torch
from torch import Tensor

from prfaas.model.kv_codec import GROUP, QMAX


def _code_bytes(values: list[float], scale: Tensor, scheme: str) -> bytes:
    # fp32 division, element by element, as the format specifies
    scaled = torch.tensor(
        [float(torch.tensor(v, dtype=torch.float32) / scale) if scale > 0 else 0.0 for v in values],
        dtype=torch.float32,
    )
    if scheme == "fp8":
        return scaled.to(torch.float8_e4m3fn).view(torch.uint8).numpy().tobytes()
    ints = [max(-127, min(127, round(float(s)))) for s in scaled]
    return struct.pack(f"<{len(ints)}b", *ints)


def encode_row_reference(row: Tensor, scheme: str) -> bytes:
    """row: [E] floating -> the encoded row bytes."""
    values = [float(v) for v in row.float()]
    codes, scales = b"", b""
    for g in range(0, len(values), GROUP):
        group = values[g : g + GROUP]
        scale = torch.tensor(max(abs(v) for v in group), dtype=torch.float32) / QMAX[scheme]
        codes += _code_bytes(group, scale, scheme)
        scales += struct.pack("<f", float(scale))
    return codes + scales


def decode_row_reference(data: bytes, elements: int, scheme: str) -> list[float]:
    """The encoded row bytes -> E decoded values (fp32)."""
    raw = torch.frombuffer(bytearray(data[:elements]), dtype=torch.uint8)
    codes = raw.view(torch.float8_e4m3fn if scheme == "fp8" else torch.int8).float().tolist()
    n_groups = elements // GROUP
    scales = struct.unpack(f"<{n_groups}f", data[elements : elements + 4 * n_groups])
    return [c * scales[i // GROUP] for i, c in enumerate(codes)]
