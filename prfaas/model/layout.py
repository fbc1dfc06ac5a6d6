"""Zero-copy byte views of one request's cache, per model layer: what the KV transfer ships.

A layer's *logical buffer* is the concatenation of its segments, in order:
- full-attention layer: tokens [start, end), token-major; token t sits at byte offset
  (t - start) · config.kv_bytes_per_token_layer and holds K then V (`[2, n_kv_heads, head_dim]`
  in the model dtype). One segment per cache block touched.
- linear layer: [recurrent `[H_v, d_k, d_v]` fp32, conv `[conv_dim, K-1]` fp32] of the request's slot.
All little-endian, exactly as the tensors sit in memory. The segments are writable memoryviews over
the cache tensors (CPU only), so a receiver can `recv_into` them directly; nothing here copies
unless the name says so (`pack_request`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from prfaas.model.cache import HybridCache, SeqCache
from prfaas.model.config import HybridConfig


@dataclass(frozen=True)
class LayerBufferSpec:
    """Declared layout of one layer's logical buffer (what the transfer needs to know)."""

    name: str  # "L03.kv" (full attention) or "L00.state" (linear: recurrent then conv)
    dtype: str  # element dtype of the buffer, e.g. "float32", "bfloat16"
    nbytes: int


def _bytes_view(t: Tensor) -> memoryview:
    """Writable memoryview over a contiguous CPU tensor's bytes (no copy)."""
    if t.device.type != "cpu":
        raise ValueError("byte views need CPU tensors; copy GPU caches with pack_request")
    if not t.is_contiguous():
        raise ValueError("byte views need contiguous tensor ranges")
    return t.view(-1).view(torch.uint8).numpy().data.cast("B")


def layer_tensors(
    cache: HybridCache,
    layer_idx: int,
    seq: SeqCache,
    start_token: int = 0,
    end_token: int | None = None,
) -> list[Tensor]:
    """The contiguous cache slices (any device) whose bytes, in order, are the layer's logical
    buffer (see the module docstring); `layer_segments` is their byte views on CPU.

    For a full layer, tokens [start_token, end_token) (default: seq.num_tokens) must lie in blocks
    of seq.block_table. Linear layers ignore the token range: their state is one fixed-size buffer.
    """
    i = cache.ordinal(layer_idx)
    if not cache.is_full(layer_idx):
        slot = seq.state_slot
        return [cache.recurrent[i][slot], cache.conv[i][slot]]
    end = seq.num_tokens if end_token is None else end_token
    if not 0 <= start_token <= end:
        raise ValueError(f"bad token range [{start_token}, {end})")
    bs = cache.block_size
    if end > len(seq.block_table) * bs:
        raise ValueError(f"block_table covers fewer than {end} tokens")
    kv = cache.kv[i]
    out = []
    t = start_token
    while t < end:
        off = t % bs
        n = min(bs - off, end - t)
        # [n, 2, Hkv, hd]: contiguous because the token axis is the block's outermost axis
        out.append(kv[seq.block_table[t // bs], off : off + n])
        t += n
    return out


def layer_segments(
    cache: HybridCache,
    layer_idx: int,
    seq: SeqCache,
    start_token: int = 0,
    end_token: int | None = None,
) -> list[memoryview]:
    """Writable byte views (CPU caches) of `layer_tensors`: what a sender reads and a receiver
    `recv_into`s."""
    return [_bytes_view(t) for t in layer_tensors(cache, layer_idx, seq, start_token, end_token)]


def stage_layer(
    cache: HybridCache,
    layer_idx: int,
    seq: SeqCache,
    start: int = 0,
    end: int | None = None,
    out: Tensor | None = None,
) -> Tensor:
    """A device cache's layer buffer copied into host memory, for a sender to ship as bytes.

    Returns uint8 [nbytes] on the host: `out[:nbytes]` when given (reuse a pinned staging buffer),
    else a new buffer, pinned when the cache is on CUDA so the copies are DMA. Waits for the copies.
    """
    parts = [
        t.reshape(-1).view(torch.uint8) for t in layer_tensors(cache, layer_idx, seq, start, end)
    ]
    nbytes = sum(p.numel() for p in parts)
    if out is None:
        out = torch.empty(nbytes, dtype=torch.uint8, pin_memory=cache.device.type == "cuda")
    if out.device.type != "cpu" or out.dtype != torch.uint8 or out.numel() < nbytes:
        raise ValueError(f"staging buffer must be host uint8 of >= {nbytes} bytes")
    off = 0
    for p in parts:
        out[off : off + p.numel()].copy_(p, non_blocking=True)
        off += p.numel()
    if cache.device.type == "cuda":
        torch.cuda.current_stream(cache.device).synchronize()
    return out[:nbytes]


def install_staged(
    cache: HybridCache,
    layer_idx: int,
    seq: SeqCache,
    data: Tensor,
    start: int = 0,
    end: int | None = None,
) -> None:
    """Copy a received layer buffer (host uint8, pinned for DMA) into a cache on any device."""
    parts = [
        t.reshape(-1).view(torch.uint8) for t in layer_tensors(cache, layer_idx, seq, start, end)
    ]
    total = sum(p.numel() for p in parts)
    if data.numel() != total or data.dtype != torch.uint8:
        raise ValueError(f"layer {layer_idx}: got {data.numel()} bytes, layout needs {total}")
    off = 0
    for p in parts:
        p.copy_(data[off : off + p.numel()], non_blocking=True)
        off += p.numel()
    if cache.device.type == "cuda":
        torch.cuda.current_stream(cache.device).synchronize()


def transfer_layout(config: HybridConfig, num_tokens: int) -> list[LayerBufferSpec]:
    """One spec per model layer, in layer order, for a request of `num_tokens` cached tokens."""
    specs = []
    for layer, kind in enumerate(config.layer_pattern):
        if kind == "F":
            nbytes = num_tokens * config.kv_bytes_per_token_layer
            specs.append(LayerBufferSpec(f"L{layer:02d}.kv", config.dtype, nbytes))
        else:
            nbytes = config.recurrent_bytes_per_layer + config.conv_bytes_per_layer
            specs.append(LayerBufferSpec(f"L{layer:02d}.state", "float32", nbytes))
    return specs


def pack_layer(
    cache: HybridCache, layer_idx: int, seq: SeqCache, start: int = 0, end: int | None = None
) -> bytes:
    """A copy of one layer's logical buffer (works for GPU caches too)."""
    if cache.device.type == "cpu":
        return b"".join(layer_segments(cache, layer_idx, seq, start, end))
    i = cache.ordinal(layer_idx)
    if not cache.is_full(layer_idx):
        slot = seq.state_slot
        parts = [cache.recurrent[i][slot], cache.conv[i][slot]]
    else:
        stop = seq.num_tokens if end is None else end
        idx = torch.tensor(seq.block_table, dtype=torch.long, device=cache.device)
        # [tokens, 2, Hkv, hd], token-major like the logical buffer
        parts = [cache.kv[i].index_select(0, idx).flatten(0, 1)[start:stop]]
    return b"".join(_bytes_view(p.cpu().contiguous()) for p in parts)


def pack_request(cache: HybridCache, seq: SeqCache) -> list[bytes]:
    """Copies of every layer's logical buffer for tokens [0, seq.num_tokens), in layer order."""
    return [pack_layer(cache, layer, seq) for layer in range(cache.config.num_layers)]


def install_layer(
    cache: HybridCache,
    layer_idx: int,
    seq: SeqCache,
    data: bytes | memoryview,
    start: int = 0,
    end: int | None = None,
) -> None:
    """Write one layer's logical buffer (as from `pack_layer`) into the request's blocks/slot."""
    segs = layer_segments(cache, layer_idx, seq, start, end)
    total = sum(s.nbytes for s in segs)
    if len(data) != total:
        raise ValueError(f"layer {layer_idx}: got {len(data)} bytes, layout needs {total}")
    src = memoryview(data).cast("B")
    off = 0
    for s in segs:
        s[:] = src[off : off + s.nbytes]
        off += s.nbytes


def install_request(cache: HybridCache, seq: SeqCache, buffers: list[bytes]) -> None:
    """Install every layer (tokens [0, seq.num_tokens)) from `pack_request` output."""
    if len(buffers) != cache.config.num_layers:
        raise ValueError(f"expected {cache.config.num_layers} layer buffers, got {len(buffers)}")
    for layer, data in enumerate(buffers):
        install_layer(cache, layer, seq, data)
