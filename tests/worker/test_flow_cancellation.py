"""Cancellation at every await of the worker flows leaves nothing registered.

`cancel_at(coro, k)` runs a coroutine and throws CancelledError into it at exactly its k-th
suspension point (what `Task.cancel()` does when it lands there), for k = 1, 2, ... until the flow
finishes before reaching k. After each run the engine, the KV sender and receiver, the layer
hooks and the output subscriptions must hold nothing: no request, block, slot, transfer or task.
The flows run on a real ComputeLoop over the emulated backend and the loopback KV transport.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine, Generator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from prfaas.engine.backend_emulated import EmulatedBackend
from prfaas.engine.core import EngineCore
from prfaas.kvtransfer.loopback import LoopbackNetwork, LoopbackReceiver, LoopbackSender
from prfaas.planner.profiles import PrefillProfile
from prfaas.request import Request, RequestKind
from prfaas.sampling import SamplingParams
from prfaas.worker.compute import ComputeLoop
from prfaas.worker.generate_flow import Admitted, Finished, KvSourceSpec, generate
from prfaas.worker.prefill_flow import prefill_and_ship

BLOCK = 16
PROFILE = PrefillProfile(
    "linear", np.array([1.0, 1e6]), np.array([1e-6, 1e-3]), np.array([64.0, 64e6])
)
PROMPT = [(i * 7 + 1) % 256 for i in range(3 * BLOCK + 5)]
PARAMS = SamplingParams(temperature=0.0, max_tokens=4, ignore_eos=True)
MAX_SUSPENSIONS = 400


class _CancelAt:
    """Awaitable driving `coro`; at its k-th suspension CancelledError is thrown into it."""

    def __init__(self, coro: Coroutine[Any, Any, Any], k: int) -> None:
        self.coro, self.k = coro, k
        self.reached = False

    def __await__(self) -> Generator[Any, Any, Any]:
        it = self.coro.__await__()
        send: Any = None
        throw: BaseException | None = None
        n = 0
        while True:
            try:
                awaited = it.throw(throw) if throw is not None else it.send(send)
            except StopIteration as stop:
                return stop.value
            throw = None
            n += 1
            if n == self.k:
                self.reached = True
                if isinstance(awaited, asyncio.Future):
                    awaited.cancel()
                throw = asyncio.CancelledError()
                continue
            try:
                send = yield awaited
            except BaseException as exc:  # noqa: BLE001 (relayed into the coroutine)
                throw, send = exc, None


def make_compute() -> ComputeLoop:
    def make_engine(hooks) -> EngineCore:  # noqa: ANN001
        backend = EmulatedBackend(PROFILE, block_size=BLOCK, decode_step_seconds=0.0)
        return EngineCore(backend, cache_budget_bytes=4 << 20, on_layer_done=hooks)

    return ComputeLoop(make_engine)


async def assert_nothing_held(compute: ComputeLoop, *parts: Any) -> None:
    async def idle() -> None:
        while await compute.call(lambda e: e.has_work or bool(e.scheduler.requests)):
            await asyncio.sleep(0.005)

    await asyncio.wait_for(idle(), 5.0)
    # The cheap check the load reports use; the full invariant walk runs once per test (teardown).
    assert await compute.call(lambda e: e.leak_report()) == ""
    assert len(compute.layer_hooks) == 0
    assert not compute._subscribers, f"subscriptions left: {list(compute._subscribers)}"
    for part in parts:
        for _ in range(200):  # transfer terminal callbacks run on later loop iterations
            held = {k: v for k, v in part.leak_check().items() if v and "connection" not in k}
            if not held:
                break
            await asyncio.sleep(0.005)
        assert not held, f"{type(part).__name__} holds {held}"


async def _sweep(run_once) -> int:  # noqa: ANN001
    """Run `run_once(k)` for k = 1.. until the flow completes without reaching k."""
    for k in range(1, MAX_SUSPENSIONS):
        reached = await run_once(k)
        if not reached:
            return k - 1
    raise AssertionError("flow never completed")


async def _drain(events) -> list[Any]:  # noqa: ANN001
    return [ev async for ev in events]


@dataclass
class Pair:
    """A prefill and a decode compute loop joined by the loopback KV transport."""

    prefill: ComputeLoop
    decode: ComputeLoop
    sender: LoopbackSender
    receiver: LoopbackReceiver


@pytest.fixture
async def pair() -> AsyncIterator[Pair]:
    net = LoopbackNetwork()
    p = Pair(make_compute(), make_compute(), LoopbackSender(net), LoopbackReceiver(net))
    p.prefill.start()
    p.decode.start()
    try:
        yield p
    finally:
        await p.sender.close()
        await p.receiver.close()
        for compute in (p.prefill, p.decode):
            # The full invariant walk once per test (each run checks the cheap report).
            await compute.call(lambda e: e.assert_no_leaks())
            await compute.stop()


async def test_cancel_prefill_and_ship_at_every_await(pair: Pair) -> None:
    prefill, decode, sender, receiver = pair.prefill, pair.decode, pair.sender, pair.receiver

    async def run_once(k: int) -> bool:
        # The decode side expects the transfer (uncancelled), the prefill side is cancelled.
        dreq = Request(f"d{k}", list(PROMPT), PARAMS, kind=RequestKind.DECODE_ONLY)
        source = KvSourceSpec(f"t{k}", "", 0.5)
        events = generate(decode, dreq, receiver=receiver, source=source)
        first = await anext(events)
        assert isinstance(first, Admitted)
        preq = Request(f"p{k}", list(PROMPT), PARAMS, kind=RequestKind.PREFILL_ONLY)
        flow = _CancelAt(prefill_and_ship(prefill, sender, preq, receiver.address, f"t{k}"), k)
        with contextlib.suppress(asyncio.CancelledError):
            await flow
        rest = await _drain(events)
        if not flow.reached:
            assert isinstance(rest[-1], Finished), rest
        await assert_nothing_held(prefill, sender)
        await assert_nothing_held(decode, receiver)
        return flow.reached

    points = await _sweep(run_once)
    # add, outputs, transfer done (the transfer layout is read without a compute-thread hop).
    assert points >= 3, f"only {points} suspension points exercised"


@pytest.mark.parametrize("kind", [RequestKind.FULL, RequestKind.DECODE_ONLY])
async def test_cancel_generate_at_every_await(kind: RequestKind, pair: Pair) -> None:
    prefill, decode, sender, receiver = pair.prefill, pair.decode, pair.sender, pair.receiver

    async def run_once(k: int) -> bool:
        dreq = Request(f"g{k}", list(PROMPT), PARAMS, kind=kind)
        remote = kind is RequestKind.DECODE_ONLY
        source = KvSourceSpec(f"t{k}", "", 0.5) if remote else None
        events = generate(decode, dreq, receiver=receiver, source=source)
        ship: asyncio.Task[Any] | None = None

        async def consume() -> list[Any]:
            nonlocal ship
            out = []
            async for ev in events:
                out.append(ev)
                if isinstance(ev, Admitted) and remote:
                    preq = Request(f"p{k}", list(PROMPT), PARAMS, kind=RequestKind.PREFILL_ONLY)
                    flow = prefill_and_ship(prefill, sender, preq, receiver.address, f"t{k}")
                    ship = asyncio.ensure_future(flow)
            return out

        flow = _CancelAt(consume(), k)
        try:
            await flow
        except asyncio.CancelledError:
            await events.aclose()
        if ship is not None:
            await asyncio.gather(ship, return_exceptions=True)
        await assert_nothing_held(decode, receiver)
        await assert_nothing_held(prefill, sender)
        return flow.reached

    points = await _sweep(run_once)
    assert points >= 3, f"only {points} suspension points exercised"
