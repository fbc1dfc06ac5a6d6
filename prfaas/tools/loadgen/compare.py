"""`--compare`: the same workload against one deployment per routing policy, one comparison.

For each policy the deployment of the topology file is started with that policy (and the backend
override), the same requests are sent on the same schedule, routing decisions are read from the
router's `/metrics`, and the deployment is stopped before the next policy starts.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from prfaas.tools.loadgen import plots
from prfaas.tools.loadgen.results import Results
from prfaas.tools.loadgen.run_report import format_table
from prfaas.tools.loadgen.runner import LoadConfig, run_load, warm_up
from prfaas.tools.loadgen.workloads import Workload

POLICIES = ("prfaas", "homogeneous-pd", "naive-hetero")


@dataclass(frozen=True)
class Target:
    """A started deployment as the load generator sees it."""

    http: str
    """OpenAI base URL."""
    metrics: list[str]
    """Prometheus endpoints, the router's first (routing decisions)."""
    egress: list[str]
    """Endpoints whose KV bytes sent cross the datacenter link (the PrfaaS workers')."""


class DeploymentLike(Protocol):
    def start(self) -> Target: ...
    def stop(self) -> None: ...


DeploymentFactory = Callable[[str, Path], DeploymentLike]
"""(policy, log_dir) -> a deployment not yet started."""


def launcher_factory(
    topology: str | Path | None, backend: str | None = None, metrics_base_port: int = 9400
) -> DeploymentFactory:
    """Deployments of a topology file through `prfaas.launcher` (the real processes)."""
    from prfaas.launcher.deployment import Deployment
    from prfaas.topology import DEFAULT_TOPOLOGY, load_topology

    path = Path(topology) if topology else DEFAULT_TOPOLOGY
    base = load_topology(path)

    class Launched:
        def __init__(self, policy: str, log_dir: Path) -> None:
            topo = base.with_overrides(backend=backend, policy=policy)
            self.deployment = Deployment(topo, path, log_dir, metrics_base_port=metrics_base_port)
            self.prfaas_workers = topo.prfaas_workers

        def start(self) -> Target:
            ep = self.deployment.start()
            # endpoints(): the router's, then one per worker, PrfaaS workers first
            egress = ep.metrics[1 : 1 + self.prfaas_workers] if metrics_base_port else []
            return Target(ep.http, ep.metrics, egress)

        def stop(self) -> None:
            self.deployment.stop()

    return Launched


@dataclass
class Comparison:
    runs: dict[str, Results]
    """Policy -> its results (same workload and schedule for all)."""
    config: dict[str, Any]

    def table(self) -> str:
        return format_table({name: r.summary for name, r in self.runs.items()})

    def routing_table(self) -> str:
        lines = ["| policy | route | reason | requests |", "|---|---|---|---:|"]
        for name, results in self.runs.items():
            for key, count in sorted(results.routing.items()):
                _, route, reason = (key.split("/", 2) + ["", ""])[:3]
                lines.append(f"| {name} | {route} | {reason} | {count:.0f} |")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "summaries": {n: asdict(r.summary) for n, r in self.runs.items()},
            "routing": {n: r.routing for n, r in self.runs.items()},
            "runs": {n: r.to_json() for n, r in self.runs.items()},
        }


def compare_policies(
    workload: Workload,
    schedule: list[float],
    *,
    topology: str | Path | None = None,
    backend: str | None = None,
    policies: Sequence[str] = POLICIES,
    config: LoadConfig | None = None,
    warmup: int = 0,
    log_dir: str | Path = "runs/bench/logs",
    metrics_base_port: int = 9400,
    factory: DeploymentFactory | None = None,
    start_attempts: int = 2,
) -> Comparison:
    """Run `workload` on `schedule` once per policy, each on a freshly started deployment."""
    factory = factory or launcher_factory(topology, backend, metrics_base_port)
    config = config or LoadConfig()
    runs: dict[str, Results] = {}
    for policy in policies:
        deployment, endpoints = _start(factory, policy, Path(log_dir) / policy, start_attempts)
        try:
            warm_up(endpoints.http, warmup, config)
            run_config = replace(
                config,
                metrics_urls=tuple(endpoints.metrics),
                egress_urls=tuple(endpoints.egress),
                label=f"{policy} ",
            )
            results = run_load(endpoints.http, workload, schedule, run_config)
        finally:
            deployment.stop()
        results.config["policy"] = policy
        runs[policy] = results
        if "interrupted" in results.config:
            break  # Ctrl-C: keep what ran, start no further deployment
    info = {
        "topology": str(topology) if topology else "default",
        "backend": backend,
        "policies": list(policies),
        "warmup": warmup,
        "workload": {"name": workload.name, "requests": len(workload.requests), **workload.params},
    }
    return Comparison(runs, info)


def _start(
    factory: DeploymentFactory, policy: str, log_dir: Path, attempts: int
) -> tuple[DeploymentLike, Target]:
    """Start a deployment, retrying a failed start: a listen port can be briefly taken as the
    ephemeral port of some client connection (the default ports lie in Linux's ephemeral range)."""
    for attempt in range(1, attempts + 1):
        deployment = factory(policy, log_dir)
        try:
            return deployment, deployment.start()
        except RuntimeError as exc:
            if attempt == attempts:
                raise
            print(f"{policy}: start failed ({str(exc).splitlines()[0]}); retrying", file=sys.stderr)
            time.sleep(3.0)
    raise AssertionError("unreachable")


def write_comparison(comparison: Comparison, out_dir: str | Path) -> dict[str, Path]:
    """comparison.json, comparison.md (results and routing decisions), a combined TTFT CDF and
    timeline PNG, and each policy's own JSON in `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: r.save(out / f"{name}.json") for name, r in comparison.runs.items()}
    js = out / "comparison.json"
    js.write_text(json.dumps(comparison.to_json(), indent=1))
    md = out / "comparison.md"
    md.write_text(
        f"{comparison.table()}\n\nRouting decisions (router /metrics, during the run):\n\n"
        f"{comparison.routing_table()}\n"
    )
    paths["json"], paths["markdown"] = js, md
    paths["ttft_cdf"] = plots.ttft_cdf(comparison.runs, out / "comparison_ttft_cdf.png")
    paths["timeline"] = plots.timeline(comparison.runs, out / "comparison_timeline.png")
    return paths
