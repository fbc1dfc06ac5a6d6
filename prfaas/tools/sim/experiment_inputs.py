"""The deployment `prfaas experiment` starts for a policy, as a `SimConfig`.

Mirrors `prfaas.tools.experiment.deploy.topology_for` field by field: the planner's split and t, the
scaled emulated profiles (`scaled_profile`: the bytes the backend really ships), BS_max as
`max_num_seqs`, decode step × time factor, the cache budget, 4 KV connections per peer,
the link rate and delay (RTT = 2 × delay), the long-term controller off. `instances_factor`
multiplies every count (the case study's hardware mix at a larger size).
"""

from __future__ import annotations

from typing import Any

from prfaas.planner.model import gbps_to_bytes_per_s
from prfaas.roles import Role
from prfaas.tools.experiment.scale import (
    PD_PROFILE,
    PRFAAS_PROFILE,
    Scale,
    cache_budget_mb,
    roles_for,
    scaled_profile,
)
from prfaas.tools.sim.decode import DecodeTiming
from prfaas.tools.sim.link import LinkChange
from prfaas.tools.sim.simulation import SimConfig
from prfaas.tools.sim.tcp import TcpParams

KV_CONNECTIONS = 4
"""The topology's default `kv_connections`."""


def experiment_config(
    policy: str,
    prediction: dict[str, Any],
    scale: Scale,
    *,
    instances_factor: int = 1,
    link_schedule: tuple[LinkChange, ...] = (),
    loss: float = 0.0,
) -> SimConfig:
    p = prediction["policies"][policy]
    t = p["threshold_tokens"]
    roles = tuple(Role(r) for r in roles_for(policy, prediction)) * instances_factor
    n_prfaas = p["n_prfaas"] * instances_factor
    return SimConfig(
        policy=policy,
        threshold_tokens=float(int(t)) if t is not None else 512.0,
        n_prfaas=n_prfaas,
        pd_roles=roles,
        prfaas_profile=scaled_profile(PRFAAS_PROFILE, scale) if n_prfaas else None,
        pd_profile=scaled_profile(PD_PROFILE, scale),
        decode=DecodeTiming(scale.decode_step_s),
        max_batch=scale.decode_max_batch,
        link_bytes_per_s=gbps_to_bytes_per_s(scale.link_gbps) * instances_factor,
        tcp=TcpParams(
            rtt_s=2 * scale.link_delay_ms / 1000, loss=loss, connections=KV_CONNECTIONS
        ),  # fmt: skip
        link_schedule=link_schedule,
        block_size=scale.block_size,
        cache_budget_bytes=cache_budget_mb(scale) << 20,
        output_tokens_mean=float(scale.output_tokens),
    )
