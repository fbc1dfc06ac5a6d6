"""The router's control loops hand the estimator the workers' count of sending KV connections
(issue 18): a backlog at connections that each keep their own rate as more of them send is not
read as a saturated line; without the count (an older worker) it still is."""

from __future__ import annotations

import pytest
from fake_workers import start_cluster

from prfaas.router.control_loops import ControlLoops
from prfaas.router.registry import RegistryConfig

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


async def test_loops_read_the_line_from_every_workers_bytes_in_the_buckets_one_waited() -> None:
    """The line is shared: in the buckets where prfaas-0 waited for it, prfaas-1's bytes went
    over it too. Read alone, prfaas-0's 15 MB/s would be a line at half its rate. (Reports
    only when the test asks: a background poll would refresh a worker the test holds back.)"""
    c = await start_cluster(
        threshold=64, num_prfaas=2, registry_config=RegistryConfig(poll_interval_s=3600)
    )
    try:
        loops = ControlLoops(c.registry, c.dispatcher.short, LINK, "prfaas", "pd")
        clock = [1000.0]  # the start of bucket 5000 (0.2 s buckets)
        loops.wall_clock = lambda: clock[0]

        async def report(buckets: dict[str, dict[int, tuple[float, float]]]) -> None:
            for worker_id, kept in buckets.items():
                keys = sorted(kept)
                c.worker(worker_id).script.load = {
                    "kv_egress_bytes_per_second": 20 * MB, "kv_line_buckets": keys,
                    "kv_line_bucket_bytes": [kept[k][0] for k in keys],
                    "kv_line_bucket_waited_seconds": [kept[k][1] for k in keys],
                }  # fmt: skip
                handle = c.registry.get(worker_id)
                assert handle is not None
                await c.registry.heartbeat_once(handle)

        await report({"prfaas-0": {4990: (1e6, 0.0)}, "prfaas-1": {4990: (1e6, 0.0)}})
        loops.telemetry()  # the first reading only marks where the buckets start
        assert loops.last_sample.busy_s == 0.0
        # Four busy buckets: too little waiting to read the line by (LINE_POOL_BUCKETS = 5).
        clock[0] = 1001.0  # buckets up to 5003 are complete in reports taken now
        busy = dict.fromkeys(range(5000, 5004), (3000000.0, 0.2))
        await report({"prfaas-0": busy, "prfaas-1": dict.fromkeys(busy, (3000000.0, 0.0))})
        tel = loops.telemetry()
        assert loops.last_sample.busy_s == 0.0 and not tel.link_saturated
        # The fifth: the line is read over the five, with both workers' bytes.
        clock[0] = 1001.2
        await report({"prfaas-0": {5004: (3e6, 0.2), 5005: (1e6, 0.05)},
                      "prfaas-1": {5004: (3e6, 0.0), 5005: (1e6, 0.0)}})  # fmt: skip
        tel = loops.telemetry()
        assert loops.last_sample.busy_s == pytest.approx(0.2)
        assert loops.last_sample.busy_bytes_per_s == pytest.approx(30 * MB)
        assert tel.capacity_bytes_per_s == pytest.approx(30 * MB) and tel.link_saturated
        # No fresh report and no bucket completed since: the last reading stands.
        loops.telemetry()
        assert loops.last_sample.busy_bytes_per_s == pytest.approx(30 * MB)
        # A bucket is read only once every worker has reported after its end.
        clock[0] = 1002.0
        await report({"prfaas-0": {5006: (9e6, 0.2)}})
        loops.telemetry()
        assert loops.last_sample.busy_bytes_per_s == pytest.approx(30 * MB)
        await report({"prfaas-1": {5006: (1e6, 0.0)}})
        loops.telemetry()
        assert loops.last_sample.busy_s == pytest.approx(0.2)  # the latest five: 6+6+6+6+10 MB
        assert loops.last_sample.busy_bytes_per_s == pytest.approx(34 * MB)
        # New buckets without a wait: nothing measured this tick.
        clock[0] = 1003.0
        await report({"prfaas-0": {5010: (1e6, 0.0)}, "prfaas-1": {5010: (1e6, 0.0)}})
        loops.telemetry()
        assert loops.last_sample.busy_s == 0.0
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
