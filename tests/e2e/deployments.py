"""Start whole deployments (`prfaas up` machinery) on free ports for end-to-end tests."""

from __future__ import annotations

from pathlib import Path

from prfaas.launcher.deployment import Deployment
from prfaas.launcher.probes import free_port_range
from prfaas.launcher.restart_policy import RestartPolicy
from prfaas.topology import DEFAULT_TOPOLOGY, Topology, load_topology


def make_topology(**overrides: object) -> Topology:
    """deploy/local.toml on free ports with the tiny model (fast on 2 cores) unless overridden."""
    base = {
        "model_preset": "tiny",
        "block_size": 64,
        "cache_budget_mb": 64,
        "http_port": free_port_range(1),
        "router_grpc_port": free_port_range(1),
        "prfaas_grpc_base_port": free_port_range(4),
        "pd_grpc_base_port": free_port_range(4),
        "pd_kv_base_port": free_port_range(4),
        "link_base_port": free_port_range(4),
        "link_control_base_port": free_port_range(4),
        "prfaas_kv_base_port": free_port_range(4),
        "threshold_tokens": 256,
    }
    base.update(overrides)
    return load_topology(DEFAULT_TOPOLOGY).with_overrides(**base)


def start(
    topo: Topology,
    log_dir: Path,
    *,
    metrics: bool = False,
    supervise: bool = False,
    restart_policy: RestartPolicy | None = None,
) -> Deployment:
    """`supervise`: restart children that die, as `prfaas up` does (launcher/supervisor.py)."""
    deployment = Deployment(
        topo, DEFAULT_TOPOLOGY, log_dir, metrics_base_port=free_port_range(8) - 1 if metrics else 0
    )
    deployment.start(supervise=supervise, restart_policy=restart_policy)
    return deployment
