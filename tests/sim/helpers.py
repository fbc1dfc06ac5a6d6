"""A small simulated deployment (the case study's scaled inputs, quick size) for the tests."""

from __future__ import annotations

from functools import cache
from typing import Any

from prfaas.tools.experiment.scale import Scale, predict
from prfaas.tools.sim import workload
from prfaas.tools.sim.experiment_inputs import experiment_config
from prfaas.tools.sim.request import SimRequest
from prfaas.tools.sim.simulation import SimConfig, Simulation

SCALE = Scale()


@cache
def prediction() -> dict[str, Any]:
    return predict(SCALE)[1]


def config(policy: str = "prfaas", **kw: Any) -> SimConfig:
    return experiment_config(policy, prediction(), SCALE, **kw)


def small_sim(
    n: int = 200, rate: float = 2.5, seed: int = 0, policy: str = "prfaas", **kw: Any
) -> tuple[Simulation, list[SimRequest]]:
    reqs = workload.lognormal(n, rate, max_tokens=SCALE.max_input_tokens, seed=seed)
    for r in reqs:
        r.output_tokens = SCALE.output_tokens
    return Simulation(config(policy, **kw), seed), reqs
