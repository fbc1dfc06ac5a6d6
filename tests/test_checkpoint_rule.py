"""The linear-state checkpoint rule (prfaas/checkpoint_rule.py): prompt end, junction, interval."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from prfaas.checkpoint_rule import checkpoint_positions

B = 256


def test_prompt_end_and_interval() -> None:
    # 40 full blocks and a partial one: every 16th block and the last full block.
    n = 40 * B + 100
    assert checkpoint_positions(0, n, n, B, 16) == [16 * B, 32 * B, 40 * B]


def test_old_rule_is_every_block_and_zero_is_none() -> None:
    n = 5 * B + 3
    assert checkpoint_positions(0, n, n, B, 1) == [B, 2 * B, 3 * B, 4 * B, 5 * B]
    assert checkpoint_positions(0, n, n, B, 0, junction=2 * B) == []


def test_block_aligned_prompt_also_checkpoints_the_block_before_its_end() -> None:
    n = 20 * B  # the same prompt again reuses at most 19 blocks (one token is computed)
    assert checkpoint_positions(0, n, n, B, 16) == [16 * B, 19 * B, 20 * B]


def test_junction_only_when_inside_the_prompt_and_the_chunk() -> None:
    n = 30 * B + 1
    assert checkpoint_positions(2 * B, n, n, B, 16, junction=5 * B) == [5 * B, 16 * B, 30 * B]
    # Chunks see only their own positions; a junction before the chunk is not repeated.
    assert checkpoint_positions(8 * B, 12 * B, n, B, 16, junction=5 * B) == []
    assert checkpoint_positions(12 * B, 20 * B, n, B, 16, junction=5 * B) == [16 * B]


def test_short_prompt_and_partial_chunk() -> None:
    assert checkpoint_positions(0, B - 1, B - 1, B, 16) == []
    # A chunk that ends inside the last partial block still checkpoints the prompt's full end.
    assert checkpoint_positions(B, 3 * B + 7, 3 * B + 7, B, 16) == [3 * B]


@given(
    n=st.integers(1, 80 * B),
    every=st.integers(0, 20),
    cuts=st.lists(st.integers(1, 79), max_size=6),
    junction_blocks=st.integers(0, 80),
)
def test_chunked_positions_are_the_whole_prompts(
    n: int, every: int, cuts: list[int], junction_blocks: int
) -> None:
    """Split anywhere on the block grid, the chunks' positions join into the whole prompt's, all on
    block boundaries within the prompt's full blocks."""
    ends = sorted({c * B for c in cuts if c * B < n} | {n})
    junction = junction_blocks * B
    whole = checkpoint_positions(0, n, n, B, every, junction)
    joined: list[int] = []
    start = 0
    for end in ends:
        joined += checkpoint_positions(start, end, n, B, every, junction)
        start = end
    assert joined == whole
    assert all(p % B == 0 and 0 < p <= n for p in whole)
    if every and n >= B:
        assert n // B * B in whole
