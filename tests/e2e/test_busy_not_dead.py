"""A busy worker is loaded, not dead (issue 10): across real processes, engine steps longer than
the router's whole heartbeat budget (3 polls x 2 s deadline) never take a worker out of placement.

The emulated decode worker takes 7 s per decode step. Before load reports were read from the
compute thread's snapshot, `GetLoad` waited for the current step, the router declared the worker
dead after three missed deadlines, and every request got 503 "not ready" meanwhile.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx

from tests.e2e.deployments import make_topology, start

STEP_S = 7.0


def test_long_engine_steps_do_not_kill_workers(tmp_path: Path) -> None:
    topo = make_topology(
        backend="emulated",
        policy="homogeneous-pd",
        emulated_time_factor=1.0,
        emulated_decode_step_ms=STEP_S * 1000,
    )
    deployment = start(topo, tmp_path)
    try:
        base = deployment.endpoints().http
        model = httpx.get(base + "/models", timeout=10).json()["data"][0]["id"]
        body = {"model": model, "prompt": "slow " * 20, "max_tokens": 3, "ignore_eos": True}
        results: list[int] = []

        def send() -> None:
            reply = httpx.post(base + "/completions", json=body, timeout=120)
            results.append(reply.status_code)

        sender = threading.Thread(target=send)
        started = time.monotonic()
        sender.start()
        readiness = []
        root = base.removesuffix("/v1")
        while sender.is_alive() and time.monotonic() - started < 100:
            readiness.append(httpx.get(root + "/ready", timeout=10).status_code)
            time.sleep(0.5)
        sender.join(timeout=10)
        elapsed = time.monotonic() - started
        assert results == [200]
        assert elapsed >= 2 * STEP_S, f"the request did not exercise long steps ({elapsed:.1f} s)"
        assert readiness and set(readiness) == {200}, readiness
        router_log = (tmp_path / "router.log").read_text()
        assert "out of placement" not in router_log and "dead after" not in router_log
    finally:
        deployment.stop()
