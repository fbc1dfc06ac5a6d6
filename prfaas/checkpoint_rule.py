"""Where a prefill checkpoints the linear-attention state: the one rule, used by the scheduler (which
takes a slot per position and hands the positions to the backend) and by the simulator's cache.

A hybrid model reuses a cached prefix only if it ends at a checkpoint (docs/hybrid-model.md §3.3,
engine/prefix_cache.py). A checkpoint costs a whole linear state (the emulated case-study profile:
~180 KB beside 4.4 KB of KV per 256-token block, ×41; a Qwen3-Next state group ≈ KV of ~3k tokens),
so checkpointing every block fills the cache with states. A prefill checkpoints at block boundaries
p (multiples of `block_size`, at most the prompt's last full block) that are
- the **prompt end**: the last full block of the prompt. In a conversation the next turn's prompt
  extends this one, so its reusable prefix ends exactly here. A block-aligned prompt also
  checkpoints one block earlier: the same prompt again may reuse all but its last block (one
  token is always computed, engine/kv_manager.py);
- a **junction**: where the request's cached blocks stop matching (`PrefixHit.num_matched_blocks`),
  when that lies past its usable hit: the KV there is shared with an earlier prompt but no state
  was kept, so the next request sharing that prefix finds one;
- every `every_blocks`-th block (the interval): bounds what a prefix ending elsewhere (evicted tail,
  a prefix shared mid-prompt for the first time) recomputes to under `every_blocks` blocks.
`every_blocks` = 1 is the old rule (every block); 0 checkpoints nothing (no reuse).

Default interval 16 blocks (4,096 tokens at the default block size): checkpoint bytes per block fall
16× (emulated: ~11 KB beside 4.4 KB of KV; a Qwen3-Next-like state: ~0.75× the KV), while a prefix
that ends off the prompt-end/junction points recomputes < 4,096 tokens, about two engine steps at
the default 2,048-token budget.
"""

from __future__ import annotations

DEFAULT_CHECKPOINT_EVERY_BLOCKS = 16


def checkpoint_positions(
    start: int,
    end: int,
    num_prompt_tokens: int,
    block_size: int,
    every_blocks: int,
    junction: int = 0,
) -> list[int]:
    """Positions p in (start, end], increasing, after which a prefill computing tokens
    [start, end) of a prompt of `num_prompt_tokens` tokens checkpoints the linear state.
    `junction` (tokens, a multiple of `block_size`; 0 for none) is where the request's cached KV
    stopped matching at admission."""
    if every_blocks <= 0:
        return []
    full_end = num_prompt_tokens // block_size * block_size
    last = min(end, full_end)
    if last <= start:
        return []
    every = every_blocks * block_size
    points = set(range((start // every + 1) * every, last + 1, every))
    repeat_end = (num_prompt_tokens - 1) // block_size * block_size
    for p in (full_end, repeat_end, junction):
        if start < p <= last and p % block_size == 0:
            points.add(p)
    return sorted(points)
