"""Deterministic prompt text: one token per byte (the byte-level tokenizer), ASCII only.

A Mooncake hash id names one prefix block; `PromptFactory.block(hash_id, n)` is the same text
every time for the same (seed, hash_id, n), so requests that share leading hash ids share those
blocks byte for byte and the serving system's prefix caches see real reuse. Text that must not be
shared (a request's own suffix, the log-normal and Azure workloads) comes from `unique(index, n)`,
drawn from a stream disjoint from the blocks'.
"""

from __future__ import annotations

import numpy as np

ALPHABET = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz ", dtype=np.uint8)
_BLOCK_STREAM = 1
_UNIQUE_STREAM = 2


class PromptFactory:
    """Builds prompt text for a seed. `special_tokens` is what the server adds to every prompt
    (prfaas's router prepends one BOS), subtracted so that prompts are exactly the requested
    number of tokens as the server counts them."""

    def __init__(self, seed: int = 0, special_tokens: int = 1) -> None:
        self.seed = seed
        self.special_tokens = special_tokens
        self._blocks: dict[tuple[int, int], str] = {}

    def _text(self, stream: int, key: int, n: int) -> str:
        rng = np.random.default_rng([self.seed, stream, key])
        return ALPHABET[rng.integers(0, len(ALPHABET), size=n)].tobytes().decode("ascii")

    def block(self, hash_id: int, n: int) -> str:
        """The text of prefix block `hash_id`, `n` tokens long (memoized)."""
        key = (hash_id, n)
        text = self._blocks.get(key)
        if text is None:
            text = self._blocks[key] = self._text(_BLOCK_STREAM, hash_id, n)
        return text

    def unique(self, index: int, n: int) -> str:
        """Text owned by request `index` alone."""
        return self._text(_UNIQUE_STREAM, index, n)

    def text_tokens(self, input_tokens: int) -> int:
        """Bytes of text for a prompt of `input_tokens` tokens as the server counts them."""
        return max(1, input_tokens - self.special_tokens)

    def for_blocks(self, index: int, hash_ids: tuple[int, ...], block_tokens: int, n: int) -> str:
        """A prompt of `n` text tokens made of the blocks of `hash_ids`, then unique filler if the
        blocks are too short; the last block is cut where the prompt ends."""
        parts: list[str] = []
        have = 0
        for hash_id in hash_ids:
            if have >= n:
                break
            parts.append(self.block(hash_id, block_tokens))
            have += block_tokens
        if have < n:
            parts.append(self.unique(index, n - have))
        return "".join(parts)[:n]
