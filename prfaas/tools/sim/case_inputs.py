"""A planner case (a case TOML, `prfaas plan --case FILE`) as a `SimConfig` and its requests.

Unlike `experiment_inputs.py` (the scaled deployment `prfaas experiment` starts), this is the case
at its own size and bytes: the CSV profiles as they are, the case's link, BS_max and decode step,
and an operating point (t, N_p, N_d) from the planner or a search. What a case file does not say
is stated here: RTT 10 ms (TcpParams' default), 4 KV connections per peer, no prefix cache (the
case's prefix hit rate enters the planner as shorter prompts, not as hashes), and a decode KV pool
that holds BS_max requests of the longest prompt (the planner's assumption: seats bind, not KV).
"""

from __future__ import annotations

import math
from dataclasses import replace

from prfaas.planner import Case, Deployment, TruncatedLogNormal
from prfaas.planner.model import gbps_to_bytes_per_s
from prfaas.roles import Role
from prfaas.tools.loadgen.workloads import Scaling
from prfaas.tools.sim import workload as sim_workload
from prfaas.tools.sim.decode import DecodeTiming
from prfaas.tools.sim.link import LinkChange
from prfaas.tools.sim.request import SimRequest
from prfaas.tools.sim.simulation import SimConfig
from prfaas.tools.sim.tcp import TcpParams

KV_CONNECTIONS = 4
UNUSED_THRESHOLD = 512.0
"""homogeneous-pd and naive-hetero ignore t (the planner reports inf / -1 for them)."""


def decode_pool_bytes(cfg: SimConfig) -> int:
    """BS_max requests of the profile's longest prompt (state included)."""
    return int(cfg.max_batch * float(cfg.pd_profile.kv_bytes[-1]))


def case_config(
    case: Case,
    dep: Deployment,
    *,
    threshold: float,
    n_p: int,
    n_d: int,
    instances_factor: int = 1,
    link_schedule: tuple[LinkChange, ...] = (),
    loss: float = 0.0,
) -> SimConfig:
    k = instances_factor
    roles = ((Role.PREFILL,) * n_p + (Role.DECODE,) * n_d) * k
    t = threshold if math.isfinite(threshold) and threshold >= 0 else UNUSED_THRESHOLD
    cfg = SimConfig(
        policy=dep.policy,
        threshold_tokens=float(int(t)),
        n_prfaas=dep.n_prfaas * k,
        pd_roles=roles,
        prfaas_profile=dep.prfaas_profile if dep.n_prfaas else None,
        pd_profile=dep.pd_profile,
        decode=DecodeTiming(case.decode.step_seconds),
        max_batch=case.decode.max_batch,
        link_bytes_per_s=gbps_to_bytes_per_s(case.link_gbps) * k,
        tcp=TcpParams(loss=loss, connections=KV_CONNECTIONS),
        link_schedule=link_schedule,
        output_tokens_mean=case.output_tokens,
    )
    return replace(cfg, cache_budget_bytes=decode_pool_bytes(cfg))


def case_requests(case: Case, rate: float, duration_s: float, seed: int) -> list[SimRequest]:
    """Poisson arrivals at `rate` for `duration_s` with the case's lengths and output length."""
    lengths = case.lengths
    if not isinstance(lengths, TruncatedLogNormal):
        raise SystemExit("--case: only log-normal input lengths can be simulated (use --trace)")
    scaling = Scaling(
        output_tokens=int(case.output_tokens), max_input_tokens=int(lengths.max_length)
    )
    return sim_workload.lognormal(
        max(2, round(rate * duration_s)), rate, mu=lengths.mu, sigma=lengths.sigma,
        min_tokens=int(lengths.min_length), max_tokens=int(lengths.max_length), scaling=scaling,
        seed=seed,
    )  # fmt: skip
