"""Prefix export/import bookkeeping: pins survive eviction, imports commit or free, no leaks."""

from __future__ import annotations

import pytest
from engine_helpers import BLOCK, make_engine, make_req, run_until_idle

from prfaas.cache_event_kind import CacheEventKind
from prfaas.engine.backend_torch import TorchBackend
from prfaas.engine.core import EngineCore, generate
from prfaas.engine.prefix_cache import CacheEvent
from prfaas.engine.prefix_spans import PrefixUnavailable
from prfaas.model import HybridModel, get_preset
from prfaas.sampling import SamplingParams

PROMPT = [(i * 5 + 3) % 256 for i in range(200)]
PREFIX = PROMPT[: 3 * BLOCK]


def warm(engine: EngineCore, prompt: list[int] = PROMPT) -> None:
    engine.add_request(make_req("warm", prompt, max_tokens=2))
    run_until_idle(engine)


def test_pin_survives_eviction_and_unpins_clean():
    engine = make_engine()
    warm(engine)
    span = engine.pin_prefix("p", PREFIX)
    assert len(span.block_table) == 3 and span.state_slot is not None
    engine.check_invariants()
    engine.prefix_cache.clear()
    assert engine.prefix_cache.match(span.hashes).num_blocks == 3, "pinned prefix was evicted"
    with pytest.raises(AssertionError, match="spans held"):
        engine.assert_no_leaks()
    assert engine.unpin_prefix("p") and not engine.unpin_prefix("p")
    engine.assert_no_leaks()
    engine.prefix_cache.clear()
    assert engine.prefix_cache.num_cached_blocks == 0


def test_pin_refuses_what_is_not_fully_cached(engine: EngineCore):
    warm(engine, PROMPT[:130])  # two full blocks cached
    with pytest.raises(PrefixUnavailable, match="128 of 192"):
        engine.pin_prefix("p", PREFIX)
    with pytest.raises(PrefixUnavailable, match="multiple"):
        engine.pin_prefix("p", PREFIX[:100])
    with pytest.raises(PrefixUnavailable):
        engine.pin_prefix("p", [])
    engine.pin_prefix("ok", PREFIX[:128])
    with pytest.raises(ValueError, match="duplicate"):
        engine.pin_prefix("ok", PREFIX[:128])
    engine.unpin_prefix("ok")


def test_import_commit_stores_blocks_and_checkpoint_then_hits():
    events: list[CacheEvent] = []
    engine = make_engine(events=events)
    span = engine.reserve_prefix_import("i", PREFIX)
    assert len(span.block_table) == 3 and engine.prefix_cache.num_cached_blocks == 0
    assert engine.commit_prefix_import("i") == len(PREFIX)
    kinds = [e.kind for e in events]
    assert kinds.count(CacheEventKind.STORED) == 3
    assert [e.block_index for e in events if e.kind is CacheEventKind.CHECKPOINT_STORED] == [2]
    engine.assert_no_leaks()
    req = make_req("r", PROMPT)
    engine.add_request(req)
    run_until_idle(engine)
    assert req.num_cached_tokens == len(PREFIX)
    engine.assert_no_leaks()


def test_import_abort_frees_everything_and_announces_nothing():
    events: list[CacheEvent] = []
    engine = make_engine(events=events)
    engine.reserve_prefix_import("i", PREFIX)
    with pytest.raises(AssertionError):
        engine.assert_no_leaks()
    assert engine.abort_prefix_import("i") and not engine.abort_prefix_import("i")
    assert events == [] and engine.pool.used_bytes == 0
    engine.assert_no_leaks()


def test_import_over_partly_cached_prefix_keeps_one_copy(engine: EngineCore):
    warm(engine, PROMPT[:130])
    cached_before = engine.prefix_cache.num_cached_blocks
    engine.reserve_prefix_import("i", PREFIX)
    assert engine.commit_prefix_import("i") == len(PREFIX)
    assert engine.prefix_cache.num_cached_blocks == cached_before + 1


def test_reserve_refuses_without_room_and_evicts_when_it_can():
    engine = make_engine(entries=4)  # 4 entries: 3 blocks + 1 slot at most
    with pytest.raises(PrefixUnavailable, match="no room"):
        engine.reserve_prefix_import("big", list(range(4 * BLOCK)))
    warm(engine, PROMPT[:70])  # caches a block and a checkpoint (evictable)
    engine.reserve_prefix_import("i", PREFIX)
    engine.abort_prefix_import("i")
    engine.assert_no_leaks()


def _copy(src: list[list[memoryview]], dst: list[list[memoryview]]) -> None:
    for s_layer, d_layer in zip(src, dst, strict=True):
        data = b"".join(bytes(s) for s in s_layer)
        pos = 0
        for d in d_layer:
            d[:] = data[pos : pos + d.nbytes]
            pos += d.nbytes
        assert pos == len(data)


def test_torch_export_import_gives_same_tokens_as_computing():
    model = HybridModel(get_preset("tiny"))

    def make() -> EngineCore:
        backend = TorchBackend(model, block_size=BLOCK)
        return EngineCore(backend, cache_budget_bytes=8 << 20, max_num_batched_tokens=128)

    params = SamplingParams(temperature=0.0, max_tokens=5, ignore_eos=True)
    holder, target, plain = make(), make(), make()
    generate(holder, [PROMPT[:250]], params, id_prefix="warm")
    pin = holder.pin_prefix("e", PREFIX)
    imp = target.reserve_prefix_import("i", PREFIX)
    assert [s.nbytes for s in holder.span_layout(pin)] == [
        s.nbytes for s in target.span_layout(imp)
    ]
    _copy(holder.span_segments(pin), target.span_segments(imp))
    holder.unpin_prefix("e")
    assert target.commit_prefix_import("i") == len(PREFIX)
    prompt = PROMPT + [7, 8, 9]
    from prfaas.request import Request

    req = Request("r", prompt, params)
    target.add_request(req)
    while not req.is_finished:
        target.step()
    assert req.num_cached_tokens == len(PREFIX)
    assert req.output_token_ids == generate(plain, [prompt], params, id_prefix="p")[0]
    for e in (holder, target, plain):
        e.assert_no_leaks()
