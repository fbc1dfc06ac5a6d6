"""Hybrid prefix cache pool: reuse, the KV-and-checkpoint rule, LRU eviction, events, budget."""

from __future__ import annotations

from engine_helpers import BLOCK, expected_tokens, make_engine, make_req, run_until_idle
from hypothesis import given, settings
from hypothesis import strategies as st

from prfaas.block_hash import block_hashes
from prfaas.cache_event_kind import CacheEventKind
from prfaas.engine.block_pool import BlockPool
from prfaas.engine.prefix_cache import PrefixCache
from prfaas.request import Request, RequestStatus
from prfaas.sampling import SamplingParams, check_stop


def test_shared_prefix_hits_and_gives_same_tokens():
    events = []
    eng = make_engine(entries=64, events=events)
    prefix = list(range(3 * BLOCK))
    a = make_req("a", prefix + [1, 2, 3])
    eng.add_request(a)
    run_until_idle(eng)
    stored = [e for e in events if e.kind is CacheEventKind.STORED]
    assert [e.block_index for e in stored] == [0, 1, 2]
    assert [e.block_hash for e in stored] == block_hashes(a.prompt_token_ids, BLOCK)
    # The default rule: a checkpoint at the prompt's last full block (the interval is longer).
    ckpts = [e.block_index for e in events if e.kind is CacheEventKind.CHECKPOINT_STORED]
    assert ckpts == [2]
    b = make_req("b", prefix + [9, 9])
    eng.add_request(b)
    run_until_idle(eng)
    assert b.num_cached_tokens == 3 * BLOCK
    assert b.output_token_ids == expected_tokens(b.prompt_token_ids, 4)
    # The whole prompt cached (block aligned): one block is recomputed for the logits, so c could
    # use 2 blocks, but no checkpoint is there. c checkpoints that junction (and, block aligned,
    # both ends), so the same prompt again reuses 2 blocks.
    c = make_req("c", prefix)
    eng.add_request(c)
    run_until_idle(eng)
    assert c.num_cached_tokens == 0
    assert c.output_token_ids == expected_tokens(c.prompt_token_ids, 4)
    c2 = make_req("c2", prefix)
    eng.add_request(c2)
    run_until_idle(eng)
    assert c2.num_cached_tokens == 2 * BLOCK
    assert c2.output_token_ids == c.output_token_ids
    eng.assert_no_leaks()


def test_usable_hit_needs_a_checkpoint():
    eng = make_engine(entries=64, checkpoint_every_blocks=0)
    prefix = list(range(2 * BLOCK))
    eng.add_request(make_req("a", prefix + [1]))
    run_until_idle(eng)
    assert eng.prefix_cache.num_cached_blocks == 2 and eng.prefix_cache.num_checkpoints == 0
    b = make_req("b", prefix + [2])
    eng.add_request(b)
    run_until_idle(eng)
    assert b.num_cached_tokens == 0
    eng.assert_no_leaks()


def test_checkpoint_only_at_shallower_block_limits_hit():
    events = []
    eng = make_engine(entries=64, events=events, checkpoint_every_blocks=2)
    prefix = list(range(3 * BLOCK))
    eng.add_request(make_req("a", prefix + list(range(7, 7 + BLOCK)) + [1]))
    run_until_idle(eng)
    # KV for 4 blocks; checkpoints after block 2 (the interval) and block 4 (the prompt end).
    ckpts = [e.block_index for e in events if e.kind is CacheEventKind.CHECKPOINT_STORED]
    assert ckpts == [1, 3]
    # b shares 3 blocks of KV with a: it reuses 2, the last checkpoint inside the shared part.
    b = make_req("b", prefix + [2])
    eng.add_request(b)
    run_until_idle(eng)
    assert b.num_cached_tokens == 2 * BLOCK
    assert b.output_token_ids == expected_tokens(b.prompt_token_ids, 4)
    eng.assert_no_leaks()


def test_lru_eviction_under_one_budget():
    events = []
    # 8 entries. "old" leaves 2 blocks + 2 checkpoints cached; "new" needs 4 blocks + 1 slot
    # + 3 checkpoints, so all of old's entries go, oldest first.
    eng = make_engine(entries=8, events=events, checkpoint_every_blocks=1)
    old = list(range(2 * BLOCK))
    new = list(range(100, 100 + 3 * BLOCK))
    eng.add_request(make_req("old", old + [1]))
    run_until_idle(eng)
    assert eng.pool.used_bytes == eng.prefix_cache.evictable_bytes > 0
    eng.add_request(make_req("new", new + [1]))
    run_until_idle(eng)
    evicted = [e for e in events if e.kind.name.endswith("EVICTED")]
    assert evicted, "the new prompt needed the old prefix's space"
    # The old chain went tail first: its deepest block is evicted before its first one.
    old_hashes = block_hashes(old + [1], BLOCK)
    order = [e.block_hash for e in evicted if e.kind is CacheEventKind.EVICTED]
    assert order == old_hashes[::-1]
    assert eng.prefix_cache.num_cached_blocks == 3 and eng.prefix_cache.num_checkpoints == 3
    again = make_req("again", new + [5])
    eng.add_request(again)
    run_until_idle(eng)
    assert again.num_cached_tokens == 3 * BLOCK
    eng.assert_no_leaks()


def test_referenced_entries_are_never_evicted():
    pool = BlockPool(budget_bytes=4 * 100, block_bytes=100, slot_bytes=100)
    cache = PrefixCache(pool)
    [b0] = pool.take_blocks(1)
    cache.insert_block(123, 0, b0)
    assert not cache.evict_until(pool.budget_bytes)
    cache.release_block(b0)
    assert cache.evict_until(pool.budget_bytes) and cache.num_cached_blocks == 0
    cache.check_invariants()


@settings(max_examples=60, deadline=None)
@given(
    out=st.lists(st.sampled_from([1, 2, 3, 257]), min_size=1, max_size=6),
    max_tokens=st.integers(1, 6),
    ignore_eos=st.booleans(),
)
def test_stop_rules_agree_with_sampler(out, max_tokens, ignore_eos):
    params = SamplingParams(
        max_tokens=max_tokens, ignore_eos=ignore_eos, stop_token_ids=(3,), stop_sequences=((1, 2),)
    )
    req = Request("r", [5], params, eos_token_id=257)
    req.output_token_ids = out
    expected = {None: None, "stop": RequestStatus.FINISHED_STOPPED}.get(
        check_stop(out, params, 257), RequestStatus.FINISHED_LENGTH
    )
    assert req.stop_status() == expected
