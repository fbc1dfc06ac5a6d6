"""`prfaas top` against a live emulated deployment: real metrics text parsed, frames rendered,
a worker killed (the frame says DOWN and why), then the router killed (the poller keeps going)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
from rich.console import Console

from prfaas.tools.top.poller import TopPoller
from prfaas.tools.top.render import render
from prfaas.tools.top.snapshot import TopSnapshot
from tests.e2e.deployments import make_topology, start


def frame(snap: TopSnapshot) -> str:
    console = Console(record=True, width=160, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(render(snap))
    return console.export_text()


def child(deployment, name: str):  # type: ignore[no-untyped-def]
    return next(c for c in deployment.supervisor.children if c.spec.name == name)


def test_top_reads_a_live_deployment_and_survives_a_dead_worker_and_router(tmp_path: Path) -> None:
    topo = make_topology(backend="emulated")
    deployment = start(topo, tmp_path, metrics=True)
    try:
        ep = deployment.endpoints()
        own = dict(zip(ep.metrics_processes, ep.metrics, strict=True))
        workers = {name: url for name, url in own.items() if name in ("pd-0", "pd-1", "prfaas-0")}
        poller = TopPoller(ep.http, workers)  # the /v1 base a user has; /metrics is derived
        poller.poll()
        with httpx.Client(timeout=60) as client:
            model = client.get(f"{ep.http}/models").json()["data"][0]["id"]
            for prompt in ("hi", "x" * 900):  # under and over t = 256 tokens: local, offloaded
                body = {"model": model, "prompt": prompt, "max_tokens": 8}
                assert client.post(f"{ep.http}/completions", json=body).status_code == 200
        time.sleep(1.5)  # a short control tick exports the link gauges
        snap = poller.poll()
        assert snap.router_up and snap.notes == []
        assert snap.offload_fraction == 0.5
        assert snap.threshold.tokens == 256.0 and snap.threshold.base_tokens == 256.0
        assert snap.link.egress_bytes_per_s is not None
        # Capacity: the router's measured-capacity gauge, or implied by egress/utilization once
        # KV flows; a router with neither and an idle link shows "-" rather than a guess.
        assert snap.link.capacity_bytes_per_s is None or snap.link.capacity_bytes_per_s > 0
        assert snap.latency.ttft_s[0.5] is not None and snap.latency.itl_s[0.9] is not None
        by_name = {w.worker: w for w in snap.workers}
        assert set(by_name) == {"pd-0", "pd-1", "prfaas-0"}
        assert all(w.healthy and w.metrics == "ok" for w in snap.workers)
        assert by_name["pd-1"].seats_total and by_name["pd-1"].seats_total > 0
        text = frame(snap)
        assert "threshold t" in text and "256 tokens" in text and "50% of routed" in text
        assert "serving" in text and "DOWN" not in text

        pd1 = child(deployment, "pd-1")
        pd1.popen.kill()
        pd1.popen.wait()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            snap = poller.poll()
            if not {w.worker: w for w in snap.workers}["pd-1"].healthy:
                break
            time.sleep(0.5)
        dead = {w.worker: w for w in snap.workers}["pd-1"]
        assert not dead.healthy and dead.metrics.startswith("unreachable")
        text = frame(snap)
        assert "worker pd-1 is DOWN" in text and "unreachable" in text
        Path(tmp_path / "frame_worker_down.txt").write_text(text)

        router = child(deployment, "router")
        router.popen.kill()
        router.popen.wait()
        snap = poller.poll()
        assert not snap.router_up and "unreachable" in snap.notes[0]
        assert {w.worker for w in snap.workers} == {"pd-0", "pd-1", "prfaas-0"}  # last scrape
        assert "UNREACHABLE" in frame(snap)
        poller.close()
    finally:
        deployment.stop()
