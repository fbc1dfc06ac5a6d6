"""Chained block hashes identify prefixes, not blocks in isolation."""

from __future__ import annotations

import pytest

from prfaas.block_hash import block_hashes


def test_only_full_blocks_are_hashed() -> None:
    assert len(block_hashes(list(range(10)), 4)) == 2
    assert block_hashes(list(range(3)), 4) == []


def test_shared_prefix_shares_hashes_until_divergence() -> None:
    a = list(range(16))
    b = list(range(8)) + [99] + list(range(9, 16))
    ha, hb = block_hashes(a, 4), block_hashes(b, 4)
    assert ha[:2] == hb[:2]
    # Divergence in block 2 changes that block's hash and every later one (chaining).
    assert ha[2] != hb[2] and ha[3] != hb[3]


def test_same_block_under_different_parent_differs() -> None:
    assert (
        block_hashes([1, 2, 3, 4, 5, 6, 7, 8], 4)[1] != block_hashes([0, 0, 0, 0, 5, 6, 7, 8], 4)[1]
    )


def test_stable_value_across_processes() -> None:
    # Golden value: changing the hash definition silently would split router and worker views.
    assert block_hashes([1, 2, 3, 4], 4) == [3753813699206364683]


def test_rejects_bad_block_size() -> None:
    with pytest.raises(ValueError):
        block_hashes([1, 2], 0)
