"""The processes of a topology that a fault can hit, named as the launcher names them.

Names follow `Deployment.specs()`: workers by worker id (`prfaas-0`, `pd-0`, ...), relays by
`Deployment.relay_name` (`link-<pd worker id>`), and `router`. The kind says what the process does, so that a schedule can
ask for "a PD decode worker" whatever the topology calls it.
"""

from __future__ import annotations

from dataclasses import dataclass

from prfaas.launcher.deployment import Deployment
from prfaas.topology import Topology

# Kinds of process a fault targets.
PRFAAS = "prfaas"  # PrfaaS prefill worker (remote datacenter)
PD_PREFILL = "pd-prefill"  # PD worker in the prefill role (PD-P)
PD_DECODE = "pd-decode"  # PD worker in the decode role (PD-D)
PD_MIXED = "pd-mixed"  # PD worker doing both
RELAY = "relay"  # userspace link relay in front of a PD worker's KV receiver (link-<pd id>)
ROUTER = "router"
WORKER_KINDS = (PRFAAS, PD_PREFILL, PD_DECODE, PD_MIXED)


@dataclass(frozen=True)
class Target:
    name: str
    kind: str


def targets_of(topo: Topology) -> list[Target]:
    """Every process `Deployment(topo)` starts, in start order (relays, workers, router)."""
    workers = topo.workers()
    relays = [
        Target(Deployment.relay_name(w), RELAY)
        for w in workers
        if topo.link.mode == "relay" and w.kind == "pd" and w.kv_via_link != w.kv_direct
    ]
    pool = [Target(w.worker_id, PRFAAS if w.kind == "prefill" else f"pd-{w.role}") for w in workers]
    return [*relays, *pool, Target("router", ROUTER)]
