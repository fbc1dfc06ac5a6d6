"""A decode worker busy with long decode steps admits a decode-only request, and emits the first
token once its KV arrived, within one step each (issue 12 item 2): outputs of calls applied
between steps go out at once, and the admission is one compute-thread hop.

Before: the PREALLOCATED output waited for the next step's `update`, the destination views for
another hop, and the shipped first token for one more step: about three steps of admission and
one and a half before the first token, with an 0.8 s step in the experiment.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np

from prfaas.engine.backend_emulated import EmulatedBackend
from prfaas.engine.core import EngineCore
from prfaas.kvtransfer.loopback import LoopbackNetwork, LoopbackReceiver, LoopbackSender
from prfaas.planner.profiles import PrefillProfile
from prfaas.request import Request, RequestKind
from prfaas.sampling import SamplingParams
from prfaas.worker.compute import ComputeLoop
from prfaas.worker.generate_flow import Admitted, KvSourceSpec, Tokens, generate
from prfaas.worker.prefill_flow import prefill_and_ship

BLOCK = 16
STEP_S = 0.3
PROFILE = PrefillProfile(
    "linear", np.array([1.0, 1e6]), np.array([1e-6, 1e-3]), np.array([64.0, 64e6])
)
PROMPT = [(i * 7 + 1) % 256 for i in range(3 * BLOCK + 5)]


def _compute(decode_step_s: float) -> ComputeLoop:
    def make_engine(hooks) -> EngineCore:  # noqa: ANN001
        backend = EmulatedBackend(PROFILE, block_size=BLOCK, decode_step_seconds=decode_step_s)
        return EngineCore(backend, cache_budget_bytes=4 << 20, on_layer_done=hooks)

    return ComputeLoop(make_engine)


async def test_admission_and_first_token_each_within_one_decode_step() -> None:
    net = LoopbackNetwork()
    sender, receiver = LoopbackSender(net), LoopbackReceiver(net)
    decode, prefill = _compute(STEP_S), _compute(0.0)
    decode.start()
    prefill.start()
    try:
        async with asyncio.timeout(20):  # a regression must fail, not hang
            await _admit_and_ship(decode, prefill, sender, receiver)
    finally:
        await sender.close()
        await receiver.close()
        await decode.stop()
        await prefill.stop()


async def _admit_and_ship(
    decode: ComputeLoop, prefill: ComputeLoop, sender: LoopbackSender, receiver: LoopbackReceiver
) -> None:
    # Keeps the decode worker stepping (STEP_S per step) for the whole test.
    busy = Request("busy", list(PROMPT), SamplingParams(max_tokens=40, ignore_eos=True))
    background = generate(decode, busy)
    assert isinstance(await anext(background), Admitted)
    drain = asyncio.ensure_future(_drain(background))
    await asyncio.sleep(1.5 * STEP_S)  # mid-step

    params = SamplingParams(max_tokens=2, ignore_eos=True)
    dreq = Request("d", list(PROMPT), params, kind=RequestKind.DECODE_ONLY)
    events = generate(decode, dreq, receiver=receiver, source=KvSourceSpec("t", "", 10.0))
    started = time.monotonic()
    assert isinstance(await anext(events), Admitted)
    admit_s = time.monotonic() - started
    preq = Request("p", list(PROMPT), params, kind=RequestKind.PREFILL_ONLY)
    shipped = await prefill_and_ship(prefill, sender, preq, receiver.address, "t")
    kv_done = time.monotonic()
    first = None
    async for ev in events:
        if isinstance(ev, Tokens):
            first = time.monotonic() - kv_done
            break
    await events.aclose()
    assert first is not None
    assert ev.ids == [shipped.first_token]
    # One hop each: the rest of the step in progress plus scheduling noise, never two steps.
    assert admit_s < 1.5 * STEP_S, admit_s
    assert first < 1.5 * STEP_S, first
    drain.cancel()
    await asyncio.gather(drain, return_exceptions=True)


async def _drain(events) -> None:  # noqa: ANN001
    async for _ in events:
        pass
