"""One deployment per policy, built from the planner's split, and run-time link rate changes.

The topology is deploy/local.toml with the emulated backend, the planner's worker counts and
roles, the scaled factors, BS_max as `max_num_seqs`, the planner's t as the router's threshold, the
long-term controller off, and ports of its own (`port_base`). The long-term controller now
calibrates its profiles with the measured prefill speed, so it could run here; it stays off on
purpose: the sweeps compare routing policies on the planner's fixed split (a re-plan mid-sweep
would change N_p/N_d between rate points), and the fluctuation run exercises the short-term loop.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prfaas.data import netns_script
from prfaas.launcher.deployment import Deployment
from prfaas.tools.experiment.scale import (
    PD_PROFILE,
    PRFAAS_PROFILE,
    Scale,
    cache_budget_mb,
    roles_for,
)
from prfaas.topology import DEFAULT_TOPOLOGY, LinkSpec, Topology, load_topology

LONG_CONTROL_OFF_S = 1e9


def netns_available() -> str | None:
    """None when namespaces can be created here, else why not."""
    if os.geteuid() != 0:
        return "not root"
    if shutil.which("ip") is None or shutil.which("tc") is None:
        return "iproute2 (ip, tc) missing"
    probe = subprocess.run(["ip", "netns", "add", "pfexprobe"], capture_output=True, check=False)
    subprocess.run(["ip", "netns", "del", "pfexprobe"], capture_output=True, check=False)
    return None if probe.returncode == 0 else "cannot create network namespaces"


def topology_for(policy: str, prediction: dict[str, Any], scale: Scale, port_base: int) -> Topology:
    p = prediction["policies"][policy]
    t = p["threshold_tokens"]
    return load_topology(DEFAULT_TOPOLOGY).replace(
        name=f"experiment-{policy}",
        backend="emulated",
        policy=policy,
        model_preset="large",  # the router's context limit (131072); no model runs
        http_port=port_base,
        router_grpc_port=port_base + 50,
        threshold_tokens=int(t) if t is not None else 512,
        long_control_seconds=LONG_CONTROL_OFF_S,
        link=LinkSpec(mode="relay", rate_gbps=scale.link_gbps, delay_ms=scale.link_delay_ms),
        prfaas_workers=p["n_prfaas"],
        prfaas_grpc_base_port=port_base + 100,
        prfaas_kv_base_port=port_base + 150,
        pd_roles=roles_for(policy, prediction),
        pd_grpc_base_port=port_base + 200,
        pd_kv_base_port=port_base + 300,
        link_base_port=port_base + 400,
        cache_budget_mb=cache_budget_mb(scale),
        block_size=scale.block_size,
        emulated_profile_prfaas=str(PRFAAS_PROFILE),
        emulated_profile_pd=str(PD_PROFILE),
        emulated_time_factor=scale.time_factor,
        emulated_byte_factor=scale.byte_factor,
        emulated_decode_step_ms=scale.decode_step_ms,
        emulated_kv_dtype=scale.kv_dtype,
        kv_compression=scale.kv_compression,
        max_num_seqs=scale.decode_max_batch,
    )


@dataclass
class Running:
    """A started deployment: where to send load and what to scrape."""

    policy: str
    deployment: Deployment
    http: str
    router_metrics: str
    worker_metrics: list[str]
    prfaas_metrics: list[str]
    netns: bool
    topology: Topology
    notes: list[str] = field(default_factory=list)

    def set_link_rate(self, gbps: float) -> bool:
        """Re-shape the veth to `gbps` (the netns setup.sh replaces the tbf); False without
        namespaces (the launcher's relays have no control port)."""
        ns = self.deployment.netns
        if ns is None:
            return False
        env = {**os.environ, "PRFAAS_NS_PREFIX": ns.prefix}
        rate = f"{max(1, round(gbps * 1000))}mbit"
        delay = "0" if not ns.netem_delay else f"{ns.delay_ms:g}"
        done = subprocess.run(
            ["bash", str(netns_script("setup.sh")), rate, delay],
            env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        return done.returncode == 0

    def stop(self) -> None:
        self.deployment.stop()


def start(
    policy: str,
    prediction: dict[str, Any],
    scale: Scale,
    log_dir: Path,
    *,
    netns: bool,
    port_base: int,
    attempts: int = 2,
) -> Running:
    topo = topology_for(policy, prediction, scale, port_base)
    metrics_base = port_base + 700
    for attempt in range(1, attempts + 1):
        dep = Deployment(topo, DEFAULT_TOPOLOGY, log_dir, metrics_base_port=metrics_base,
                         netns=netns)  # fmt: skip
        try:
            ep = dep.start()
        except RuntimeError as exc:
            if attempt == attempts:
                raise
            print(f"{policy}: start failed ({str(exc).splitlines()[0]}); retry", file=sys.stderr)
            time.sleep(3.0)
            continue
        workers = ep.metrics[1:]
        return Running(policy, dep, ep.http, ep.metrics[0], workers,
                       workers[: topo.prfaas_workers], netns, dep.topo)  # fmt: skip
    raise AssertionError("unreachable")
