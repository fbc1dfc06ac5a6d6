"""A prefill's report splits its time where the compute really began (`Request.compute_started_at`,
set by the engine when the first step that computes part of the prompt starts): the queue wait
ends there, not when the first layer is handed to the sender one layer later. Before, a quarter
of the first step (the emulator's GGGF) was counted as queueing: 0.13 s per request at the
experiment's H200 profile, on every request that arrived at an idle worker."""

from __future__ import annotations

import asyncio

import numpy as np

from prfaas.engine.backend_emulated import EmulatedBackend
from prfaas.engine.core import EngineCore
from prfaas.kvtransfer.loopback import LoopbackNetwork, LoopbackReceiver, LoopbackSender
from prfaas.planner.profiles import PrefillProfile
from prfaas.request import Request, RequestKind
from prfaas.sampling import SamplingParams
from prfaas.worker.compute import ComputeLoop
from prfaas.worker.generate_flow import Admitted, KvSourceSpec, generate
from prfaas.worker.prefill_flow import prefill_and_ship

BLOCK = 16
PREFILL_S = 1.2  # any prompt: four layers of 0.3 s
PROFILE = PrefillProfile(
    "flat", np.array([1.0, 1e6]), np.array([PREFILL_S, PREFILL_S]), np.array([64.0, 64e6])
)
PROMPT = [(i * 7 + 1) % 256 for i in range(3 * BLOCK + 5)]


def _compute() -> ComputeLoop:
    def make_engine(hooks) -> EngineCore:  # noqa: ANN001
        backend = EmulatedBackend(PROFILE, block_size=BLOCK, decode_step_seconds=0.0)
        return EngineCore(backend, cache_budget_bytes=4 << 20, on_layer_done=hooks)

    return ComputeLoop(make_engine)


async def test_an_idle_workers_prefill_reports_no_queue_and_the_whole_compute() -> None:
    net = LoopbackNetwork()
    sender, receiver = LoopbackSender(net), LoopbackReceiver(net)
    decode, prefill = _compute(), _compute()
    decode.start()
    prefill.start()
    try:
        async with asyncio.timeout(20):
            params = SamplingParams(max_tokens=1, ignore_eos=True)
            dreq = Request("d", list(PROMPT), params, kind=RequestKind.DECODE_ONLY)
            events = generate(decode, dreq, receiver=receiver, source=KvSourceSpec("t", "", 10.0))
            assert isinstance(await anext(events), Admitted)
            preq = Request("p", list(PROMPT), params, kind=RequestKind.PREFILL_ONLY)
            report = await prefill_and_ship(prefill, sender, preq, receiver.address, "t")
            async for _ in events:
                pass
    finally:
        await sender.close()
        await receiver.close()
        await decode.stop()
        await prefill.stop()
    layer_s = PREFILL_S / 4
    # The worker was idle: the wait is one compute-thread hop, far below a layer (was >= 0.3 s).
    assert report.queue_seconds < layer_s / 2, report.queue_seconds
    assert report.prefill_seconds >= PREFILL_S - 0.01, report.prefill_seconds
    assert report.first_layer_seconds >= layer_s - 0.01, report.first_layer_seconds
