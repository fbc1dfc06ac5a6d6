"""The router's control loops hand the estimator the workers' count of sending KV connections
(issue 18): a backlog at connections that each keep their own rate as more of them send is not
read as a saturated line; without the count (an older worker) it still is."""

from __future__ import annotations

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
