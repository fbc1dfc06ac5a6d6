"""Dead vs slow, and status codes that tell the truth, over fake gRPC workers.

A worker whose load report is slower than the heartbeat deadline is busy, not dead: it stays in
placement (as loaded). A worker whose port refuses is dead after `max_failures` polls. With the
local prefill pool down, requests PrfaaS can serve still go through; with no decode worker the
router is not ready (503), and with full workers it is overloaded (429).
"""

from __future__ import annotations

import asyncio
import time

import pytest
from fake_workers import start_cluster
from test_dispatch_routing import run

from prfaas.router.generation_backend import NotReady, Overloaded
from prfaas.router.policy import Reason, Target
from prfaas.router.registry import RegistryConfig

FAST = RegistryConfig(poll_interval_s=0.05, rpc_timeout_s=0.2, max_failures=2, unresponsive_s=30)


async def wait_for(cond, timeout_s: float = 5.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


async def test_slow_load_reports_keep_a_worker_in_placement() -> None:
    c = await start_cluster(registry_config=FAST)
    try:
        handle = c.registry.get("prfaas-0")
        assert handle is not None
        c.worker("prfaas-0").script.load_delay_s = 1.0  # 5x the heartbeat deadline
        await wait_for(lambda: handle.load_stale)
        await asyncio.sleep(1.0)  # many missed deadlines in a row
        assert handle.healthy and c.dispatcher.ready()
        _, decisions, tokens, _ = await run(c, list(range(200)))
        assert (decisions[0].target, decisions[0].prefill_worker) == (Target.PRFAAS, "prfaas-0")
        assert len(tokens) == 4
        c.worker("prfaas-0").script.load_delay_s = 0.0
        await wait_for(lambda: not handle.load_stale)
    finally:
        await c.close()


async def test_a_refusing_port_is_dead_after_max_failures() -> None:
    c = await start_cluster(registry_config=FAST)
    try:
        await c.worker("prfaas-0").stop()
        handle = c.registry.get("prfaas-0")
        assert handle is not None
        await wait_for(lambda: not handle.healthy)
        assert handle.num_failures >= FAST.max_failures
        # The local cluster still serves everything: long requests fall back locally.
        _, decisions, tokens, _ = await run(c, list(range(200)))
        assert (decisions[0].target, decisions[0].reason) == (
            Target.LOCAL,
            Reason.PRFAAS_UNAVAILABLE,
        )
        assert len(tokens) == 4
    finally:
        await c.close()


async def test_local_prefill_down_short_requests_go_to_prfaas() -> None:
    c = await start_cluster(registry_config=FAST, threshold=64)
    try:
        await c.worker("pd-0").stop()  # the only PD-P
        await wait_for(lambda: not c.registry.get("pd-0").healthy)  # type: ignore[union-attr]
        assert c.dispatcher.ready()
        _, decisions, tokens, _ = await run(c, list(range(20)))
        assert (decisions[0].target, decisions[0].reason) == (
            Target.PRFAAS,
            Reason.LOCAL_PREFILL_UNAVAILABLE,
        )
        assert len(tokens) == 4
    finally:
        await c.close()


async def test_homogeneous_without_local_prefill_is_not_ready() -> None:
    c = await start_cluster(registry_config=FAST, policy="homogeneous-pd")
    try:
        await c.worker("pd-0").stop()
        await wait_for(lambda: not c.registry.get("pd-0").healthy)  # type: ignore[union-attr]
        assert not c.dispatcher.ready()
        with pytest.raises(NotReady, match="no healthy prefill worker"):
            await run(c, list(range(20)))
    finally:
        await c.close()


async def test_no_decode_worker_is_not_ready() -> None:
    c = await start_cluster(registry_config=FAST)
    try:
        await c.worker("pd-1").stop()  # the only PD-D
        await wait_for(lambda: not c.registry.get("pd-1").healthy)  # type: ignore[union-attr]
        assert not c.dispatcher.ready()
        with pytest.raises(NotReady, match="no healthy decode worker"):
            await run(c, list(range(200)))
    finally:
        await c.close()


async def test_running_out_of_workers_on_retries_is_overload_not_missing_role() -> None:
    """Failed attempts exclude their workers; when none is left the answer is 429 (overload),
    not 503 "no healthy prefill worker" — every role still has a healthy worker."""
    c = await start_cluster(registry_config=FAST, threshold=64)
    try:
        c.worker("prfaas-0").script.prefill_mode = "fail"
        c.worker("pd-0").script.prefill_mode = "fail"
        with pytest.raises(Overloaded):
            await run(c, list(range(200)))
        assert c.dispatcher.ready()
    finally:
        await c.close()
