"""KV compression on the line (opt-in per deployment: worker option --kv-compression, topology
key worker.kv_compression): the worker-side codec glue around the model-free KV transfer.

Who does what:
- Prefill side (`KvEncoder`): full-attention buffers ("Lnn.kv", token-major) are encoded token range
  by token range as prefill produces them (prfaas/model/kv_codec.py: fp8 e4m3 or int8 codes with a
  fp32 scale per 64 elements) into buffers this object owns until the transfer ended; the sender
  only ever sees those bytes. Linear states ("Lnn.state") are handed over unchanged (exact).
- Decode side (`KvDecoder`): the receiver writes the encoded KV into staging buffers owned here; once
  the transfer is DONE, `install()` (on the compute thread) decodes them into the preallocated cache
  blocks. States arrive straight into the cache as before.
- kvtransfer sees bytes and a declared layout: an encoded buffer declares the dtype
  "kvq1:<scheme>:g<GROUP>:<model dtype>" (docs/kv-wire-format.md, "Buffer encodings"), so a
  receiver that expects the plain layout refuses the stream at OPEN, naming both dtypes.

Imports torch: the flows import this module only when compression is on.
"""

from __future__ import annotations

import torch

from prfaas.engine.execution_backend import BufferSpec
from prfaas.model import kv_codec

KV_COMPRESSIONS = ("none", *kv_codec.SCHEMES)
ENCODING_VERSION = "kvq1"


def encoded_dtype(scheme: str, dtype: str) -> str:
    """The layout dtype an encoded full-attention buffer declares on the wire."""
    return f"{ENCODING_VERSION}:{scheme}:g{kv_codec.GROUP}:{dtype}"


def _is_kv(spec: BufferSpec) -> bool:
    return spec.name.endswith(".kv")


class _Plan:
    """The wire layout of a request's buffers under `scheme`, and each KV layer's row geometry."""

    def __init__(self, scheme: str, layout: list[BufferSpec], num_tokens: int) -> None:
        if scheme not in kv_codec.SCHEMES:
            raise ValueError(f"unknown KV compression {scheme!r}; one of {KV_COMPRESSIONS}")
        self.scheme, self.layout, self.n = scheme, layout, num_tokens
        self.wire_layout: list[BufferSpec] = []
        # Per layer (KV layers only): model torch dtype, elements per token row, encoded row bytes.
        self.rows: dict[int, tuple[torch.dtype, int, int]] = {}
        for layer, spec in enumerate(layout):
            if not _is_kv(spec) or num_tokens == 0:
                self.wire_layout.append(spec)
                continue
            dtype = getattr(torch, spec.dtype, None)
            if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
                raise ValueError(
                    f"{spec.name}: KV compression needs a float cache, not {spec.dtype}"
                )
            per_token, rest = divmod(spec.nbytes, num_tokens)
            elements = per_token // dtype.itemsize
            if rest or elements * dtype.itemsize != per_token:
                raise ValueError(f"{spec.name}: {spec.nbytes} bytes are not {num_tokens} rows")
            row_bytes = kv_codec.encoded_row_bytes(elements)
            self.rows[layer] = (dtype, elements, row_bytes)
            self.wire_layout.append(
                BufferSpec(spec.name, encoded_dtype(scheme, spec.dtype), num_tokens * row_bytes)
            )

    def row_views(self, layer: int, segments: list[memoryview]) -> list[torch.Tensor]:
        """The cache segments of a KV layer as [tokens, E] tensors over the same memory."""
        dtype, elements, _ = self.rows[layer]
        return [
            torch.frombuffer(seg, dtype=dtype).view(-1, elements) for seg in segments if seg.nbytes
        ]


class KvEncoder(_Plan):
    """Prefill side: encodes KV token ranges; owns the encoded bytes until it is dropped."""

    def __init__(self, scheme: str, layout: list[BufferSpec], num_tokens: int) -> None:
        super().__init__(scheme, layout, num_tokens)
        self._keep: list[torch.Tensor] = []

    def encode(
        self, layer: int, segments: list[memoryview], begin_token: int
    ) -> tuple[memoryview, int]:
        """Encode the cache rows in `segments` (tokens from `begin_token` on); returns the encoded
        bytes and their offset in the layer's wire buffer. Runs on the compute thread."""
        _, _, row_bytes = self.rows[layer]
        parts = [
            kv_codec.encode_rows(rows, self.scheme) for rows in self.row_views(layer, segments)
        ]
        encoded = parts[0] if len(parts) == 1 else torch.cat(parts)
        self._keep.append(encoded)
        return encoded.numpy().data.cast("B"), begin_token * row_bytes


class KvDecoder(_Plan):
    """Decode side: staging buffers for the encoded KV, decoded into the cache on `install()`."""

    def __init__(
        self,
        scheme: str,
        layout: list[BufferSpec],
        num_tokens: int,
        dest: list[list[memoryview]],
    ) -> None:
        super().__init__(scheme, layout, num_tokens)
        self.dest = dest
        # uint8 [n, row_bytes] per KV layer: where the receiver writes the encoded bytes.
        self.staging = {
            layer: torch.empty(num_tokens, row_bytes, dtype=torch.uint8)
            for layer, (_, _, row_bytes) in self.rows.items()
        }
        self.wire_dest = [
            [self.staging[i].numpy().data.cast("B")] if i in self.staging else segs
            for i, segs in enumerate(dest)
        ]

    def install(self) -> None:
        """Decode every staged KV layer into its cache segments (compute thread; after DONE)."""
        for layer, staged in self.staging.items():
            row = 0
            for rows in self.row_views(layer, self.dest[layer]):
                kv_codec.decode_rows(staged[row : row + rows.shape[0]], rows, self.scheme)
                row += rows.shape[0]
            if row != self.n:
                raise ValueError(f"layer {layer}: cache holds {row} rows, transfer has {self.n}")
        self.staging.clear()
