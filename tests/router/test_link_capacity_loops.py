"""The router's control loops hand the estimator the workers' count of sending KV connections
(issue 18): a backlog at connections that each keep their own rate as more of them send is not
read as a saturated line; without the count (an older worker) it still is."""

from __future__ import annotations

import pytest
from fake_workers import start_cluster

from prfaas.router.control_loops import ControlLoops

LINK = 125e6  # 1 Gbit/s
MB = 1e6


async def _ticks(sending: list[float]) -> tuple[ControlLoops, list[float]]:
    c = await start_cluster(threshold=64)
    try:
        loops = ControlLoops(c.registry, c.dispatcher.short, LINK, "prfaas", "pd")
        prfaas, handle = c.worker("prfaas-0"), c.registry.get("prfaas-0")
        assert handle is not None
        capacities = []
        for n in sending:
            # Each connection carries 2 MB/s whatever the count: window-bound, 50 MB queued.
            prfaas.script.load = {"kv_egress_bytes_per_second": 2 * MB * max(n, 4),
                                  "kv_queued_bytes": 50_000_000, "kv_sending_connections": n}  # fmt: skip
            await c.registry.heartbeat_once(handle)
            capacities.append(loops.telemetry().capacity_bytes_per_s)
        return loops, capacities
    finally:
        await c.close()


async def test_loops_pass_the_sending_connections_to_the_estimator() -> None:
    loops, capacities = await _ticks([4, 8, 16, 12])
    assert loops.last_sample.sending == 12
    assert capacities == [LINK] * 4 and not loops.capacity.saturated
    # A worker that does not report the count: the same backlog reads as the line's.
    loops, capacities = await _ticks([0, 0])
    assert capacities[-1] < 0.5 * LINK and loops.capacity.saturated


async def test_loops_measure_the_line_from_the_workers_timed_backlogs() -> None:
    # Two PrfaaS workers report their `kv_backlogged_*` counters; each tick the estimator gets
    # the bytes both put on the wire while they waited, over the longer of the two stretches.
    c = await start_cluster(threshold=64, num_prfaas=2)
    try:
        loops = ControlLoops(c.registry, c.dispatcher.short, LINK, "prfaas", "pd")
        reports = [
            ({"kv_backlogged_bytes": 0, "kv_backlogged_seconds": 0.0},) * 2,
            # Both queued for 0.4 s at once on a fallen line: 6 + 6 MB over 0.4 s = 30 MB/s.
            ({"kv_backlogged_bytes": 6_000_000, "kv_backlogged_seconds": 0.4},) * 2,
            # A hand-over: a backlog at the report, timed at 0.1 s: not a measure of the line.
            (
                {
                    "kv_backlogged_bytes": 7_000_000,
                    "kv_backlogged_seconds": 0.5,
                    "kv_queued_bytes": 20_000_000,
                },
            )
            * 2,  # fmt: skip
        ]
        seen = []
        for tick in reports:
            for worker_id, load in zip(("prfaas-0", "prfaas-1"), tick, strict=True):
                c.worker(worker_id).script.load = {"kv_egress_bytes_per_second": 20 * MB, **load}
                handle = c.registry.get(worker_id)
                assert handle is not None
                await c.registry.heartbeat_once(handle)
            tel = loops.telemetry()
            seen.append((loops.last_sample.busy_s, tel.capacity_bytes_per_s, tel.link_saturated))
        assert seen[0] == (0.0, LINK, False)  # first sight: no rise to read yet
        assert seen[1][0] == 0.4 and seen[1][1] == 30 * MB and seen[1][2]
        assert seen[2][0] == pytest.approx(0.1) and seen[2][1] > 30 * MB and not seen[2][2]
    finally:
        await c.close()


async def test_older_workers_leave_the_estimator_on_the_reported_backlog() -> None:
    c = await start_cluster(threshold=64)
    try:
        loops = ControlLoops(c.registry, c.dispatcher.short, LINK, "prfaas", "pd")
        c.worker("prfaas-0").script.load = {"kv_egress_bytes_per_second": 10 * MB,
                                            "kv_queued_bytes": 50_000_000}  # fmt: skip
        handle = c.registry.get("prfaas-0")
        assert handle is not None
        await c.registry.heartbeat_once(handle)
        tel = loops.telemetry()
        assert loops.last_sample.busy_s is None
        assert tel.capacity_bytes_per_s == 10 * MB and tel.link_saturated
    finally:
        await c.close()
