"""A workload whose mix changes over time: consecutive phases, each with its own rate and mix.

A phase is `DURATION:RATE:LONG_FRACTION` (seconds, requests/s, share of long requests); phases
are comma-separated and run back to back, e.g. short-heavy, long-heavy, short-heavy:
  --phases 120:1.0:0.1,120:0.6:0.9,120:1.0:0.1
Arrivals are Poisson at the phase's rate inside its window. Each request is long with the phase's
probability; lengths come from the paper's log-normal (workloads.py) conditioned on the class:
short in [min_tokens, short_max_tokens], long in [long_min_tokens, max_tokens] (truncation before
scaling, as for `lognormal_workload`). The phase of every request is kept in the workload's
params (`phase_of`) and in the `PhasedLoad`, so a report can be cut by phase.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from prfaas.tools.loadgen.prompts import PromptFactory
from prfaas.tools.loadgen.workloads import (
    PAPER_MAX_TOKENS,
    PAPER_MIN_TOKENS,
    PAPER_MU,
    PAPER_OUTPUT_TOKENS,
    PAPER_SIGMA,
    RequestSpec,
    Scaling,
    Workload,
    sample_truncated_lognormal,
)


@dataclass(frozen=True)
class Phase:
    duration_s: float
    rate_rps: float
    long_fraction: float
    """Share of requests drawn from the long class, in [0, 1]."""


@dataclass(frozen=True)
class LengthClasses:
    """Where the short and long classes of the log-normal lie (tokens, before scaling)."""

    short_max_tokens: float = 4096
    long_min_tokens: float = 32768
    mu: float = PAPER_MU
    sigma: float = PAPER_SIGMA
    min_tokens: float = PAPER_MIN_TOKENS
    max_tokens: float = PAPER_MAX_TOKENS


def parse_phases(text: str) -> list[Phase]:
    """`DURATION:RATE:LONG_FRACTION[,...]` -> phases; ValueError on a malformed or empty spec."""
    phases = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        fields = part.split(":")
        if len(fields) != 3:
            raise ValueError(f"phase {part!r}: want DURATION:RATE:LONG_FRACTION")
        duration, rate, frac = (float(f) for f in fields)
        if duration <= 0 or rate <= 0 or not 0.0 <= frac <= 1.0:
            raise ValueError(f"phase {part!r}: duration and rate > 0, fraction in [0, 1]")
        phases.append(Phase(duration, rate, frac))
    if not phases:
        raise ValueError("no phases given")
    return phases


def phase_bounds(phases: list[Phase]) -> list[tuple[float, float]]:
    """[start, end) of each phase in seconds from the run's start."""
    bounds, t = [], 0.0
    for p in phases:
        bounds.append((t, t + p.duration_s))
        t += p.duration_s
    return bounds


def phased_schedule(phases: list[Phase], seed: int = 0) -> tuple[list[float], list[int]]:
    """Send times (Poisson at each phase's rate inside its window) and each request's phase."""
    rng = np.random.default_rng([seed, 0xFA5E])
    times: list[float] = []
    phase_of: list[int] = []
    for i, (p, (start, end)) in enumerate(zip(phases, phase_bounds(phases), strict=True)):
        t = start
        while True:
            t += float(rng.exponential(1.0 / p.rate_rps))
            if t >= end:
                break
            times.append(t)
            phase_of.append(i)
    return times, phase_of


@dataclass(frozen=True)
class PhasedLoad:
    workload: Workload
    schedule: list[float]
    """Send time of each request, seconds from the run's start."""
    phase_of: list[int]
    """Index of each request's phase."""


def phased_workload(
    phases: list[Phase],
    *,
    classes: LengthClasses | None = None,
    scaling: Scaling | None = None,
    seed: int = 0,
    special_tokens: int = 1,
) -> PhasedLoad:
    """The requests of `phases`, their send times and phases (one per request, in order)."""
    classes = classes or LengthClasses()
    if not classes.min_tokens < classes.short_max_tokens <= classes.long_min_tokens:
        raise ValueError("need min_tokens < short_max_tokens <= long_min_tokens")
    scaling = scaling or Scaling()
    times, phase_of = phased_schedule(phases, seed)
    rng = np.random.default_rng([seed, 0x1E9])
    is_long = [bool(rng.random() < phases[k].long_fraction) for k in phase_of]
    c = classes
    short = iter(sample_truncated_lognormal(len(is_long) - sum(is_long), c.mu, c.sigma,
                                            c.min_tokens, c.short_max_tokens, rng))  # fmt: skip
    long = iter(sample_truncated_lognormal(sum(is_long), c.mu, c.sigma, c.long_min_tokens,
                                           c.max_tokens, rng))  # fmt: skip
    prompts = PromptFactory(seed, special_tokens)
    output_tokens = scaling.output(PAPER_OUTPUT_TOKENS)
    requests = []
    for i, long_one in enumerate(is_long):
        n = scaling.input(next(long) if long_one else next(short))
        text = prompts.unique(i, prompts.text_tokens(n))
        requests.append(RequestSpec(i, text, len(text) + special_tokens, output_tokens))
    params = {
        "phases": [asdict(p) for p in phases],
        "classes": asdict(classes),
        "phase_of": phase_of,
        "is_long": is_long,
        "length_scale": scaling.length_scale,
        "output_tokens": output_tokens,
        "max_input_tokens": scaling.max_input_tokens,
        "seed": seed,
    }
    return PhasedLoad(Workload("phased", requests, params), times, phase_of)
