"""The warm-up request runs the real engine path and leaves the engine as clean as it found it:
no live request, no cached block or checkpoint, no cache event announced."""

from __future__ import annotations

import pytest

from prfaas.engine.backend_torch import TorchBackend
from prfaas.engine.core import EngineCore
from prfaas.engine.prefix_cache import CacheEvent
from prfaas.model import HybridModel, get_preset
from prfaas.worker.compute import ComputeLoop
from prfaas.worker.warmup import warm_up


@pytest.mark.parametrize("block_size", [64, 256])
async def test_warm_up_runs_a_request_and_leaves_nothing(block_size: int) -> None:
    events: list[CacheEvent] = []
    model = HybridModel(get_preset("tiny"))

    def make_engine(hooks) -> EngineCore:  # noqa: ANN001
        return EngineCore(
            TorchBackend(model, block_size=block_size),
            cache_budget_bytes=8 << 20,
            cache_listener=events.append,
            on_layer_done=hooks,
        )

    compute = ComputeLoop(make_engine)
    compute.start()
    try:
        seconds = await warm_up(compute, block_size)
        assert seconds > 0
        # A prefill and two decode steps really ran.
        assert compute.snapshot.num_steps >= 3
        assert events == []
        assert await compute.call(lambda e: e.pool.used_bytes) == 0
        await compute.call(lambda e: e.assert_no_leaks())
        assert compute.snapshot.leak_report == ""
    finally:
        await compute.stop()
