"""Global prefix index: a prefix counts only where KV blocks and a state checkpoint both exist."""

from __future__ import annotations

import pytest

from prfaas.cache_event_kind import CacheEventKind
from prfaas.router.prefix_index import CacheEvent, PrefixIndex, block_hashes

BS = 4
K = CacheEventKind
TOKENS = list(range(20))  # 5 full blocks
CHAIN = block_hashes(TOKENS, BS)


def _index(*stores: tuple[str, int, bool]) -> PrefixIndex:
    idx = PrefixIndex(BS)
    for w, c in [("p0", "local"), ("p1", "local"), ("r0", "prfaas")]:
        idx.register_worker(w, c)
    for worker, nblocks, ckpt_every in stores:
        for i in range(nblocks):
            idx.apply(
                CacheEvent(
                    worker, K.STORED, CHAIN[i], has_checkpoint=ckpt_every or i == nblocks - 1
                )
            )
    return idx


@pytest.mark.parametrize(
    ("stores", "worker", "cluster", "expected_worker", "expected_cluster"),
    [
        ([], "p0", "local", 0, 0),
        ([("p0", 3, True)], "p0", "local", 12, 12),
        ([("p0", 3, True), ("p1", 5, False)], "p1", "local", 20, 20),  # best worker wins
        ([("p0", 3, True)], "r0", "prfaas", 0, 0),  # other cluster sees nothing
        ([("r0", 4, False)], "r0", "prfaas", 16, 16),  # checkpoint only at the end is enough
    ],
)
def test_match_per_worker_and_cluster(
    stores, worker, cluster, expected_worker, expected_cluster
) -> None:
    m = _index(*stores).match(CHAIN)
    assert m.worker_tokens(worker) == expected_worker
    assert m.cluster_tokens(cluster) == expected_cluster


def test_prefix_needs_a_checkpoint_at_its_boundary() -> None:
    idx = _index()
    for i in range(4):
        idx.apply(CacheEvent("p0", K.STORED, CHAIN[i], has_checkpoint=(i == 1)))
    assert idx.match(CHAIN).worker_tokens("p0") == 8  # KV for 4 blocks, checkpoint after 2
    idx.apply(CacheEvent("p0", K.CHECKPOINT_STORED, CHAIN[3]))
    assert idx.match(CHAIN).worker_tokens("p0") == 16
    idx.apply(CacheEvent("p0", K.CHECKPOINT_EVICTED, CHAIN[3]))
    assert idx.match(CHAIN).worker_tokens("p0") == 8


def test_evicted_middle_block_cuts_the_prefix() -> None:
    idx = _index(("p0", 5, True))
    idx.apply(CacheEvent("p0", K.EVICTED, CHAIN[2]))
    assert idx.match(CHAIN).worker_tokens("p0") == 8


def test_blocks_spread_over_workers_do_not_combine() -> None:
    idx = _index(("p0", 2, True))
    for i in range(2, 5):
        idx.apply(CacheEvent("p1", K.STORED, CHAIN[i], has_checkpoint=True))
    m = idx.match(CHAIN)
    assert m.cluster_tokens("local") == 8
    assert m.best_worker["local"] == "p0"


def test_diverging_request_matches_only_shared_prefix() -> None:
    idx = _index(("p0", 5, True))
    other = TOKENS[:9] + [999] + TOKENS[10:]
    assert idx.match_tokens(other).worker_tokens("p0") == 8


def test_clear_remove_and_unknown_worker() -> None:
    idx = _index(("p0", 3, True), ("r0", 3, True))
    idx.apply(CacheEvent("p0", K.CLEARED))
    assert idx.match(CHAIN).cluster_tokens("local") == 0
    idx.remove_worker("r0")
    assert idx.match(CHAIN).per_cluster == {}
    idx.apply(CacheEvent("r0", K.STORED, CHAIN[0], True))
    assert idx.num_dropped_events == 1
    assert idx.match(CHAIN).per_worker == {}
