"""End-to-end behaviour of the simulated deployment: routing follows t, prefix caches hit and
feed the router's index, a link cut raises t, and a larger deployment runs (scale smoke test)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from prfaas.tools.sim.cli import add_arguments, run
from prfaas.tools.sim.link import LinkChange
from tests.sim.helpers import small_sim


def test_requests_longer_than_t_are_offloaded_and_all_finish() -> None:
    sim, reqs = small_sim(n=120, rate=1.5)
    res = sim.run(reqs)
    t = sim.cfg.threshold_tokens
    assert all(r.finish_s is not None for r in res.requests)
    assert all(r.offloaded == (r.input_tokens > t) for r in res.requests)
    for r in res.requests:
        assert r.arrival_s <= r.prefill_start_s <= r.prefill_end_s <= r.first_token_s < r.finish_s


def test_homogeneous_pd_never_uses_the_link() -> None:
    sim, reqs = small_sim(n=60, rate=1.0, policy="homogeneous-pd")
    res = sim.run(reqs)
    assert not any(r.offloaded for r in res.requests) and sim.link is None


def test_shared_prefixes_hit_the_instance_cache_and_the_router_index() -> None:
    sim, reqs = small_sim(n=80, rate=1.0, policy="homogeneous-pd")
    shared = tuple(range(1, 41))  # 40 blocks = 10240 tokens common to every prompt
    for r in reqs:
        r.input_tokens = max(r.input_tokens, 41 * 256)
        r.block_hashes = shared + (1000 + r.index,)
    res = sim.run(reqs)
    later = [r for r in res.requests[10:] if r.error is None]
    assert sum(r.cached_tokens >= 40 * 256 for r in later) > len(later) // 2
    assert sim.index.match(shared).cluster_tokens("local") == 40 * 256


def test_a_link_cut_raises_the_threshold_and_it_returns() -> None:
    cut = (LinkChange(60.0, 0.05), LinkChange(120.0, 1.0))
    sim, reqs = small_sim(n=540, rate=3.0, link_schedule=cut)
    res = sim.run(reqs)
    base = sim.cfg.threshold_tokens
    before = [s["threshold_tokens"] for s in res.timeline if s["t_s"] < 60]
    during = [s["threshold_tokens"] for s in res.timeline if 60 <= s["t_s"] < 120]
    assert max(before) == base and max(during) > base
    assert res.timeline[-1]["threshold_tokens"] == base
    offload_during = [r for r in res.requests if 70 <= r.arrival_s < 120 and r.offloaded]
    offload_before = [r for r in res.requests if 10 <= r.arrival_s < 60 and r.offloaded]
    assert len(offload_during) < len(offload_before)


def test_scale_smoke_many_instances() -> None:
    sim, reqs = small_sim(n=2000, rate=60.0, instances_factor=20)  # 240 instances
    res = sim.run(reqs)
    done = [r for r in res.requests if r.finish_s is not None]
    assert len(done) >= 0.95 * len(reqs)
    assert {r.prefill_worker for r in done if r.offloaded} >= {f"prfaas-{i}" for i in range(60)}
    assert res.stats["instances"] == 240


def test_cli_experiment_quick_writes_the_experiment_outputs(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert run(parser.parse_args(["--experiment", "--quick", "--out-dir", str(tmp_path)])) == 0
    doc = json.loads((tmp_path / "experiment.json").read_text())
    assert set(doc["points"]) == {"prfaas", "homogeneous-pd", "naive-hetero"}
    assert doc["points"]["naive-hetero"][0]["offload_fraction"] == 1.0
    assert doc["points"]["homogeneous-pd"][0]["offload_fraction"] == 0.0
    assert (tmp_path / "throughput.png").stat().st_size > 0
    assert (tmp_path / "fluctuation.png").stat().st_size > 0
    assert [e["event"] for e in doc["fluctuation"]["events"]] == ["cut", "restore"]


def test_controller_reads_committed_kv_and_local_wait_as_the_routers_control_loops_do() -> None:
    # ControlLoops.telemetry feeds the short-term controller the router's count of committed KV
    # and the local prefill workers' predicted wait (its local hold / shed); so does the simulator.
    sim, reqs = small_sim(n=150, rate=2.5)
    res = sim.run(reqs)
    committed = [s["committed_bytes"] for s in res.timeline]
    waits = [s["local_wait_s"] for s in res.timeline]
    assert max(committed) > 0 and sim.router.committed_bytes == 0.0
    assert max(waits) > 0 and waits[-1] == 0.0
