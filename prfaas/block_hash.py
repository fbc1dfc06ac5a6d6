"""Chained block hashes: the one definition of "same prefix" shared by workers and the router.

A prompt is cut into full blocks of `block_size` tokens; block i's hash covers its parent's hash and
its own token ids, so equal hashes at position i imply equal prefixes [0, (i+1)*block_size). Partial
tail blocks get no hash: they are never reusable (paper §3.2, prefix-cache vs transfer-cache blocks).
The hash is xxh3-64 over little-endian int32 token ids, stable across processes and machines.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xxhash

# Parent of the first block; any fixed value works as long as every process uses the same one.
ROOT_HASH = 0


def hash_block(parent_hash: int, token_ids: Sequence[int]) -> int:
    """Hash of one full block given its parent's hash. Returns an unsigned 64-bit int."""
    h = xxhash.xxh3_64(parent_hash.to_bytes(8, "little"))
    h.update(np.asarray(token_ids, dtype="<i4").tobytes())
    return h.intdigest()


def block_hashes(token_ids: Sequence[int], block_size: int) -> list[int]:
    """Hashes of every full block of `token_ids`, in order (len = len(token_ids) // block_size)."""
    if block_size <= 0:
        raise ValueError(f"block_size must be positive, got {block_size}")
    hashes: list[int] = []
    parent = ROOT_HASH
    for start in range(0, len(token_ids) - block_size + 1, block_size):
        parent = hash_block(parent, token_ids[start : start + block_size])
        hashes.append(parent)
    return hashes
