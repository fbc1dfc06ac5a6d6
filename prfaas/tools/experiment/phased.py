"""`prfaas experiment --phases`: the long loop under a mix that changes (issue 12 item 5).

One prfaas deployment (emulated backend, relay link) with the router's long-term planner ON at a
short period, under a phased load (loadgen/phases.py: e.g. short-heavy, long-heavy, short-heavy).
While the load runs, the router's `/metrics` is polled every second for N_p / N_d
(`prfaas_num_instances`) and t; afterwards router.log gives every planner decision and role change
(`long-term: ...`, `SetRole`). Written to --out-dir: phased.json (samples, decisions, per-phase
summary, every request), phased.md and phased.png (roles, t and throughput over time, phases
shaded). Passing means zero failed requests.
"""

from __future__ import annotations

import os
import re
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from prfaas.launcher.deployment import Deployment
from prfaas.tools.experiment.scale import PD_PROFILE, PRFAAS_PROFILE
from prfaas.tools.loadgen.phases import LengthClasses, parse_phases, phase_bounds, phased_workload
from prfaas.tools.loadgen.results import Results
from prfaas.tools.loadgen.runner import LoadConfig, run_load, warm_up
from prfaas.tools.loadgen.scrape import sample_values
from prfaas.tools.loadgen.workloads import Scaling
from prfaas.topology import DEFAULT_TOPOLOGY, LinkSpec, Topology, load_topology

LONG_TERM_LINE = re.compile(
    r"^(\S+ \S+) INFO \S+: long-term: (\S+) t=(\S+) N_p=(\d+) N_d=(\d+) rate=(\S+)/s actions=(.*)$"
)


def phased_topology(
    port_base: int, pd_roles: list[str], long_period_s: float, time_factor: float
) -> Topology:
    """deploy/local.toml, emulated, prfaas policy, the long-term planner every `long_period_s`."""
    return load_topology(DEFAULT_TOPOLOGY).replace(
        name="experiment-phased",
        backend="emulated",
        policy="prfaas",
        model_preset="large",  # the router's context limit (131072); no model runs
        http_port=port_base,
        router_grpc_port=port_base + 50,
        long_control_seconds=long_period_s,
        link=LinkSpec(mode="relay", rate_gbps=1.0, delay_ms=5.0),
        prfaas_workers=1,
        prfaas_grpc_base_port=port_base + 100,
        prfaas_kv_base_port=port_base + 150,
        pd_roles=list(pd_roles),
        pd_grpc_base_port=port_base + 200,
        pd_kv_base_port=port_base + 300,
        link_base_port=port_base + 400,
        emulated_profile_prfaas=str(PRFAAS_PROFILE),
        emulated_profile_pd=str(PD_PROFILE),
        emulated_time_factor=time_factor,
    )


class RoleSampler:
    """Polls the router's N_p, N_d and t once a second on a thread until `stop()`."""

    def __init__(self, metrics_url: str, local_cluster: str) -> None:
        self.url, self.cluster = metrics_url, local_cluster
        self.samples: list[dict[str, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.t0 = 0.0

    def start(self, t0: float) -> None:
        self.t0 = t0
        self._thread.start()

    def _run(self) -> None:
        with httpx.Client(timeout=5.0) as client:
            while not self._stop.is_set():
                try:
                    text = client.get(self.url).text
                    self.samples.append({"t_s": time.perf_counter() - self.t0, **self.parse(text)})
                except (httpx.HTTPError, ValueError):
                    pass
                self._stop.wait(1.0)

    def parse(self, text: str) -> dict[str, float]:
        out = {"n_p": 0.0, "n_d": 0.0, "threshold": 0.0}
        for labels, value in sample_values(text, "prfaas_num_instances"):
            if labels.get("cluster") == self.cluster and labels.get("role") in (
                "prefill",
                "decode",
            ):
                out["n_p" if labels["role"] == "prefill" else "n_d"] = value
        for _, value in sample_values(text, "prfaas_routing_threshold_tokens"):
            out["threshold"] = value
        return out

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10.0)


def planner_decisions(router_log: Path) -> list[dict[str, Any]]:
    """Every `long-term:` decision in router.log (wall-clock time, reason, t, N_p, N_d, actions)."""
    out = []
    for line in router_log.read_text(errors="replace").splitlines():
        m = LONG_TERM_LINE.match(line)
        if m:
            out.append({"time": m[1], "reason": m[2], "threshold": float(m[3]), "n_p": int(m[4]),
                        "n_d": int(m[5]), "rate_rps": float(m[6]), "actions": m[7]})  # fmt: skip
    return out


def per_phase(results: Results, phase_of: list[int], phases: list) -> list[dict[str, Any]]:
    """Requests, failures, TTFT and the completion rate of the requests sent in each phase."""
    out = []
    for k, (start, end) in enumerate(phase_bounds(phases)):
        recs = [r for r, p in zip(results.records, phase_of, strict=True) if p == k]
        ok = [r for r in recs if r.ok]
        ttft = [r.ttft_s for r in ok if r.ttft_s is not None]
        done_in = [r for r in ok if r.e2e_s is not None and start <= r.start_s + r.e2e_s < end]
        out.append({
            "phase": k, "start_s": start, "end_s": end, "offered_rps": phases[k].rate_rps,
            "long_fraction": phases[k].long_fraction, "requests": len(recs), "failed":
            len(recs) - len(ok), "ttft_mean_s": sum(ttft) / len(ttft) if ttft else None,
            "completions_per_s_in_window": len(done_in) / (end - start),
        })  # fmt: skip
    return out


def run_phased(
    phases_spec: str,
    out: Path,
    *,
    port_base: int,
    pd_roles: list[str],
    long_period_s: float,
    time_factor: float,
    length_scale: float,
    output_tokens: int,
    classes: LengthClasses,
    seed: int = 0,
) -> dict[str, Any]:
    phases = parse_phases(phases_spec)
    scaling = Scaling(length_scale=length_scale, output_tokens=output_tokens,
                      max_input_tokens=131072 - output_tokens - 1)  # fmt: skip
    load = phased_workload(phases, classes=classes, scaling=scaling, seed=seed)
    topo = phased_topology(port_base, pd_roles, long_period_s, time_factor)
    log_dir = out / "logs"
    dep = Deployment(topo, DEFAULT_TOPOLOGY, log_dir, metrics_base_port=port_base + 700,
                     netns=False)  # fmt: skip
    load_start = os.getloadavg()
    ep = dep.start()
    sampler = RoleSampler(ep.metrics[0], topo.pd_cluster)
    try:
        warm_up(ep.http, 2)
        t0 = time.perf_counter()
        sampler.start(t0)
        config = LoadConfig(timeout_s=900.0, metrics_urls=tuple(ep.metrics[:1]), egress_urls=(),
                            progress=False, clock_origin=t0)  # fmt: skip
        results = run_load(ep.http, load.workload, load.schedule, config)
    finally:
        sampler.stop()
        dep.stop()
    summary = results.summary
    phase_of = load.phase_of
    doc: dict[str, Any] = {
        "phases": [p.__dict__ for p in phases],
        "classes": classes.__dict__,
        "topology": {
            "pd_roles": pd_roles,
            "prfaas_workers": topo.prfaas_workers,
            "long_control_seconds": long_period_s,
            "time_factor": time_factor,
        },  # fmt: skip
        "length_scale": length_scale,
        "output_tokens": output_tokens,
        "load_average": {"start": load_start, "end": os.getloadavg()},
        "requests": summary.requests,
        "failed": summary.failed,
        "errors": summary.errors,
        "throughput_rps": summary.throughput_rps,
        "per_phase": per_phase(results, phase_of, phases),
        "samples": sampler.samples,
        "decisions": planner_decisions(log_dir / "router.log"),
        "role_changes": role_changes(log_dir),
        "routing": results.routing,
        "records": [
            {
                "start_s": r.start_s,
                "e2e_s": r.e2e_s,
                "ttft_s": r.ttft_s,
                "ok": r.ok,
                "input_tokens": r.input_tokens,
                "phase": p,
                "error": r.error,
            }
            for r, p in zip(results.records, phase_of, strict=True)
        ],  # fmt: skip
    }
    return doc


def role_changes(log_dir: Path) -> list[str]:
    """Role changes as the PD workers logged them ("role prefill -> decode") and the router's
    failed `SetRole`s, prefixed by the log's name."""
    out = []
    for path in sorted(log_dir.glob("pd-*.log")) + [log_dir / "router.log"]:
        for line in path.read_text(errors="replace").splitlines():
            if re.search(r"\brole \w+ -> \w+|SetRole .* failed", line):
                out.append(f"{path.stem}: {line}")
    return out
