"""Simulated requests from the loadgen's workloads: the same lengths, outputs, prefix hashes and
arrival times a `prfaas bench serve` / `prfaas experiment` run would send, without building text.

- `from_workload`: a loadgen `Workload` plus its schedule (what `prfaas experiment` sends);
- `lognormal`: the paper's lengths drawn exactly as `lognormal_workload` draws them (same seed,
  same generator calls), for runs too large to build prompt text for;
- `mooncake`: a Mooncake JSONL trace; `hash_ids` become the prompt's block-hash chain (equal ids
  at position k mean an equal prefix, as the trace defines them), blocks of 512 × length_scale;
- `azure`: an Azure LLM inference CSV (no prefix information: every prompt unique).
Arrivals: Poisson at a rate (`prfaas.tools.loadgen.arrivals.poisson_schedule`) or trace timestamps.
"""

from __future__ import annotations

import csv
from itertools import islice
from pathlib import Path

import numpy as np

from prfaas.block_hash import hash_block
from prfaas.tools.loadgen.arrivals import poisson_schedule, trace_schedule
from prfaas.tools.loadgen.workloads import (
    MOONCAKE_BLOCK_TOKENS,
    PAPER_MAX_TOKENS,
    PAPER_MIN_TOKENS,
    PAPER_MU,
    PAPER_OUTPUT_TOKENS,
    PAPER_SIGMA,
    Scaling,
    Workload,
    parse_azure_timestamp,
    read_mooncake_rows,
    sample_truncated_lognormal,
)
from prfaas.tools.sim.request import SimRequest


def from_workload(workload: Workload, schedule: list[float]) -> list[SimRequest]:
    return [
        SimRequest(r.index, t, r.input_tokens, r.output_tokens)
        for r, t in zip(workload.requests, schedule, strict=True)
    ]


def lognormal(
    n: int,
    rate: float,
    *,
    mu: float = PAPER_MU,
    sigma: float = PAPER_SIGMA,
    min_tokens: int = PAPER_MIN_TOKENS,
    max_tokens: int = PAPER_MAX_TOKENS,
    scaling: Scaling | None = None,
    seed: int = 0,
) -> list[SimRequest]:
    scaling = scaling or Scaling()
    rng = np.random.default_rng(seed)
    lengths = sample_truncated_lognormal(n, mu, sigma, min_tokens, max_tokens, rng)
    out = scaling.output(PAPER_OUTPUT_TOKENS)
    times = poisson_schedule(n, rate, seed)
    return [
        SimRequest(i, t, scaling.input(raw), out)
        for i, (raw, t) in enumerate(zip(lengths.tolist(), times, strict=True))
    ]


def _chain(hash_ids: list[int]) -> tuple[int, ...]:
    """Mooncake ids name a block's content given its position; chain them as the worker would
    chain token blocks, so a hash names the whole prefix up to it."""
    out, parent = [], 0
    for h in hash_ids:
        parent = hash_block(parent, (h & 0x7FFFFFFF,))
        out.append(parent)
    return tuple(out)


def _arrivals(stamps: list[float], rate: float | None, time_scale: float, seed: int) -> list[float]:
    if rate is not None:
        return poisson_schedule(len(stamps), rate, seed)
    return trace_schedule(stamps, time_scale)


def mooncake(
    path: str | Path,
    *,
    limit: int | None = None,
    scaling: Scaling | None = None,
    rate: float | None = None,
    time_scale: float = 1.0,
    seed: int = 0,
) -> tuple[list[SimRequest], int]:
    """Requests and the block size (tokens) their hashes use."""
    scaling = scaling or Scaling()
    block = max(1, round(MOONCAKE_BLOCK_TOKENS * scaling.length_scale))
    rows = list(islice(read_mooncake_rows(Path(path)), limit))
    times = _arrivals([float(r["timestamp"]) / 1000.0 for r in rows], rate, time_scale, seed)
    reqs = []
    for i, (row, t) in enumerate(zip(rows, times, strict=True)):
        n = scaling.input(row["input_length"])
        hashes = _chain([int(h) for h in row.get("hash_ids", ())])[: n // block]
        reqs.append(SimRequest(i, t, n, scaling.output(row["output_length"]), hashes))
    return reqs, block


def azure(
    path: str | Path,
    *,
    limit: int | None = None,
    scaling: Scaling | None = None,
    rate: float | None = None,
    time_scale: float = 1.0,
    seed: int = 0,
) -> list[SimRequest]:
    scaling = scaling or Scaling()
    with Path(path).open(newline="") as f:
        rows = list(islice(csv.DictReader(f), limit))
    stamps = [parse_azure_timestamp(r["TIMESTAMP"]) for r in rows]
    times = _arrivals(stamps, rate, time_scale, seed)
    return [
        SimRequest(
            i, t, scaling.input(int(r["ContextTokens"])), scaling.output(int(r["GeneratedTokens"]))
        )
        for i, (r, t) in enumerate(zip(rows, times, strict=True))
    ]
