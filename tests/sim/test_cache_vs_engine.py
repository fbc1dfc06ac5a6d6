"""The simulator's prefix cache (prfaas/tools/sim/cache.py) against the engine's: the same prompts,
one after another, give the same hits and leave the same blocks and checkpoints cached.

The prompts are Mooncake-like: shared system prompts cut at random depths (a junction: the prompt
leaves cached KV where no checkpoint is), conversations that extend their previous turn, unique
suffixes, partial and block-aligned tails. The budget holds everything (no eviction): the engine
evicts at admission for a request's whole footprint, the simulator at the prefill's end, which is
documented as not modelled."""

from __future__ import annotations

import random

import pytest

from prfaas.block_hash import block_hashes
from prfaas.engine.core import EngineCore
from prfaas.engine.execution_backend import NullBackend
from prfaas.request import Request
from prfaas.router.prefix_index import PrefixIndex
from prfaas.sampling import SamplingParams
from prfaas.tools.sim.cache import InstanceCache

BLOCK = 64
ENTRY = 1024  # NullBackend: a block is 64 tokens x 16 B, a state slot 1024 B
ENTRIES = 20_000


def _prompts(n: int, seed: int) -> list[list[int]]:
    rng = random.Random(seed)
    next_id = iter(range(1, 1 << 30))
    roots = [[next(next_id) for _ in range(k)] for k in (3, 5, 7, 20, 37)]
    sessions: list[list[int]] = []
    prompts = []
    for _ in range(n):
        if sessions and rng.random() < 0.4:
            ids = rng.choice(sessions)  # the next turn of a conversation
        else:
            root = rng.choice(roots)
            ids = root[: rng.randint(1, len(root))]  # a system prompt, maybe cut short
            sessions.append(ids)
        ids += [next(next_id) for _ in range(rng.randint(0, 6))]
        tail = rng.choice([0, rng.randint(1, BLOCK - 1)])
        tokens = [h * BLOCK + j for h in ids for j in range(BLOCK)]
        prompts.append(tokens + [rng.randint(1, 1 << 20) for _ in range(tail)] or [1])
    return prompts


def _engine_hits(prompts: list[list[int]], every: int) -> tuple[list[int], EngineCore]:
    backend = NullBackend(block_size=BLOCK, kv_bytes_per_token=16, state_bytes=ENTRY)
    eng = EngineCore(backend, cache_budget_bytes=ENTRIES * ENTRY, max_num_batched_tokens=256,
                     checkpoint_every_blocks=every)  # fmt: skip
    hits = []
    for i, p in enumerate(prompts):
        req = Request(f"r{i}", p, SamplingParams(temperature=0.0, max_tokens=1))
        eng.add_request(req)
        while eng.has_work:
            eng.step()
        hits.append(req.num_cached_tokens)
    eng.assert_no_leaks()
    return hits, eng


def _sim_hits(
    prompts: list[list[int]], every: int, junctions: bool = True
) -> tuple[list[int], InstanceCache]:
    index = PrefixIndex(BLOCK)
    index.register_worker("w", "c")
    cache = InstanceCache("w", index, ENTRIES * ENTRY, ENTRY, ENTRY, every)
    hits = []
    for p in prompts:
        hashes = tuple(block_hashes(p, BLOCK))
        cached, junction = cache.match(hashes, len(p))
        cache.store(hashes, len(p), cached, junction if junctions else 0)
        hits.append(cached)
    cache.cache.check_invariants()
    return hits, cache


@pytest.mark.parametrize("every", [16, 4])
@pytest.mark.parametrize("seed", [0, 1])
def test_sim_cache_hits_equal_the_engines(every: int, seed: int) -> None:
    prompts = _prompts(150, seed)
    engine, eng = _engine_hits(prompts, every)
    sim, cache = _sim_hits(prompts, every)
    assert sim == engine
    # The same entries are left (the router's index sees the same events' outcome).
    assert set(cache.cache._block_by_hash) == set(eng.prefix_cache._block_by_hash)
    assert set(cache.cache._ckpt_by_hash) == set(eng.prefix_cache._ckpt_by_hash)
    # Junctions matter in this sequence: without their checkpoints the hits are smaller.
    without, _ = _sim_hits(prompts, every, junctions=False)
    assert sum(without) < sum(engine)
    assert sum(engine) > 0
