"""Workloads: the requests of one run (prompt text, lengths, optional trace timestamps).

- `lognormal_workload`: the paper's case study (reference/paper.md §8.4): input lengths from a
  log-normal (mu 9.90, sigma 1.00) truncated to [128, 128K] tokens, output fixed at 1024 tokens.
- `mooncake_workload`: Mooncake JSONL traces; prompts are built from the hash ids' blocks so that
  requests sharing hash ids share identical prompt blocks (prefix caching is exercised).
- `azure_workload`: Azure LLM inference 2023 CSVs (timestamp, context tokens, generated tokens).

`length_scale` multiplies every input length (and the Mooncake block size) so a small machine can
serve the same shape of workload; `output_scale` multiplies output lengths and `output_tokens`
fixes them. `max_input_tokens` caps inputs after scaling (the model's context limit).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from pathlib import Path
from statistics import NormalDist

import numpy as np

from prfaas.tools.loadgen.prompts import PromptFactory

PAPER_MU, PAPER_SIGMA = 9.90, 1.00
PAPER_MIN_TOKENS, PAPER_MAX_TOKENS = 128, 131072
PAPER_OUTPUT_TOKENS = 1024
MOONCAKE_BLOCK_TOKENS = 512


@dataclass(frozen=True)
class RequestSpec:
    """One request of a workload. `input_tokens` counts what the server sees (text + BOS)."""

    index: int
    prompt: str
    input_tokens: int
    output_tokens: int
    timestamp_s: float | None = None
    """Arrival time in the trace (seconds from its start), None for synthetic workloads."""
    hash_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class Workload:
    name: str
    requests: list[RequestSpec]
    params: dict[str, object]
    """How it was made (source, scales, seed), recorded in the results' config."""

    @property
    def timestamps(self) -> list[float] | None:
        """The trace's arrival times, or None when any request has none."""
        stamps = [float(r.timestamp_s) for r in self.requests if r.timestamp_s is not None]
        return stamps if len(stamps) == len(self.requests) else None


@dataclass(frozen=True)
class Scaling:
    length_scale: float = 1.0
    output_scale: float = 1.0
    output_tokens: int | None = None
    """When set, every request generates exactly this many tokens."""
    max_input_tokens: int | None = None

    def input(self, tokens: float) -> int:
        n = max(2, round(tokens * self.length_scale))
        return min(n, self.max_input_tokens) if self.max_input_tokens else n

    def output(self, tokens: float) -> int:
        if self.output_tokens is not None:
            return self.output_tokens
        return max(1, round(tokens * self.output_scale))


def sample_truncated_lognormal(
    n: int, mu: float, sigma: float, low: float, high: float, rng: np.random.Generator
) -> np.ndarray:
    """`n` draws of exp(N(mu, sigma)) conditioned on [low, high] (rejection sampling)."""
    out = np.empty(0)
    while out.size < n:
        draw = rng.lognormal(mu, sigma, size=2 * (n - out.size) + 16)
        out = np.concatenate([out, draw[(draw >= low) & (draw <= high)]])
    return out[:n]


def sample_stratified_truncated_lognormal(
    n: int, mu: float, sigma: float, low: float, high: float, rng: np.random.Generator, block: int
) -> np.ndarray:
    """`n` lengths of the same truncated log-normal, stratified in blocks of `block` consecutive
    requests: a block of b draws one length from each of b equal-probability strata (quantile
    (i + U_i) / b of the truncated distribution), in random order. Every window of a block or more
    then offers about the distribution's mean work; i.i.d. draws of a heavy-tailed length made the
    thirds of a 300 s capacity point differ by up to 36 % in prefill work (issue 12), which a
    steady-state test read as the system falling behind."""
    normal = NormalDist()
    lo, hi = normal.cdf((math.log(low) - mu) / sigma), normal.cdf((math.log(high) - mu) / sigma)
    out = []
    for start in range(0, n, block):
        b = min(block, n - start)
        q = lo + (hi - lo) * (np.arange(b) + rng.uniform(size=b)) / b
        z = np.asarray([normal.inv_cdf(min(max(x, 1e-15), 1 - 1e-15)) for x in q])
        out.append(rng.permutation(np.clip(np.exp(mu + sigma * z), low, high)))
    return np.concatenate(out) if out else np.empty(0)


def lognormal_workload(
    num_requests: int,
    *,
    mu: float = PAPER_MU,
    sigma: float = PAPER_SIGMA,
    min_tokens: int = PAPER_MIN_TOKENS,
    max_tokens: int = PAPER_MAX_TOKENS,
    scaling: Scaling | None = None,
    seed: int = 0,
    special_tokens: int = 1,
    stratify_block: int = 0,
) -> Workload:
    """The paper's workload; truncation applies before scaling (the shape is the paper's). Output
    is the paper's 1024 tokens times `output_scale`, or `output_tokens`. `stratify_block` > 0
    draws the lengths stratified in blocks of that many requests (see
    `sample_stratified_truncated_lognormal`); 0 draws them i.i.d."""
    scaling = scaling or Scaling()
    output_tokens = scaling.output(PAPER_OUTPUT_TOKENS)
    rng = np.random.default_rng(seed)
    if stratify_block > 0:
        lengths = sample_stratified_truncated_lognormal(
            num_requests, mu, sigma, min_tokens, max_tokens, rng, stratify_block
        )
    else:
        lengths = sample_truncated_lognormal(num_requests, mu, sigma, min_tokens, max_tokens, rng)
    prompts = PromptFactory(seed, special_tokens)
    requests = []
    for i, raw in enumerate(lengths):
        n = scaling.input(raw)
        text = prompts.unique(i, prompts.text_tokens(n))
        requests.append(RequestSpec(i, text, len(text) + special_tokens, output_tokens))
    params = {"mu": mu, "sigma": sigma, "min_tokens": min_tokens, "max_tokens": max_tokens}
    if stratify_block > 0:
        params["stratify_block"] = stratify_block
    return Workload("lognormal", requests, {**params, **_scaling_params(scaling, seed)})


def read_mooncake_rows(path: Path) -> Iterator[dict]:
    """The trace's JSON rows in file order, blank lines skipped (the load generator and the
    simulator read it through here)."""
    with path.open() as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def mooncake_workload(
    path: str | Path,
    *,
    limit: int | None = None,
    scaling: Scaling | None = None,
    block_tokens: int = MOONCAKE_BLOCK_TOKENS,
    seed: int = 0,
    special_tokens: int = 1,
) -> Workload:
    """Requests of a Mooncake trace (timestamps in ms). Block `k` of a prompt is the text of
    `hash_ids[k]`, `block_tokens * length_scale` tokens long."""
    scaling = scaling or Scaling()
    block = max(1, round(block_tokens * scaling.length_scale))
    prompts = PromptFactory(seed, special_tokens)
    requests = []
    for i, row in enumerate(islice(read_mooncake_rows(Path(path)), limit)):
        hash_ids = tuple(int(h) for h in row.get("hash_ids", ()))
        n = prompts.text_tokens(scaling.input(row["input_length"]))
        text = prompts.for_blocks(i, hash_ids, block, n)
        requests.append(
            RequestSpec(
                i,
                text,
                len(text) + special_tokens,
                scaling.output(row["output_length"]),
                float(row["timestamp"]) / 1000.0,
                hash_ids,
            )
        )
    params = {"path": str(path), "block_tokens": block_tokens, "scaled_block_tokens": block}
    return Workload("mooncake", requests, {**params, **_scaling_params(scaling, seed)})


def parse_azure_timestamp(text: str) -> float:
    """'2023-11-16 18:17:03.9799600' (7 fractional digits) to POSIX seconds (naive, as UTC)."""
    whole, _, frac = text.strip().partition(".")
    base = datetime.strptime(whole, "%Y-%m-%d %H:%M:%S")
    return base.timestamp() + (float("0." + frac) if frac else 0.0)


def azure_workload(
    path: str | Path,
    *,
    limit: int | None = None,
    scaling: Scaling | None = None,
    seed: int = 0,
    special_tokens: int = 1,
) -> Workload:
    """Requests of an Azure LLM inference trace; timestamps relative to its first request. The
    trace has no prefix information, so every prompt is unique."""
    scaling = scaling or Scaling()
    prompts = PromptFactory(seed, special_tokens)
    requests = []
    start: float | None = None
    with Path(path).open(newline="") as f:
        for i, row in enumerate(islice(csv.DictReader(f), limit)):
            t = parse_azure_timestamp(row["TIMESTAMP"])
            start = t if start is None else start
            text = prompts.unique(i, prompts.text_tokens(scaling.input(int(row["ContextTokens"]))))
            requests.append(
                RequestSpec(
                    i,
                    text,
                    len(text) + special_tokens,
                    scaling.output(int(row["GeneratedTokens"])),
                    t - start,
                )
            )
    return Workload("azure", requests, {"path": str(path), **_scaling_params(scaling, seed)})


def _scaling_params(scaling: Scaling, seed: int) -> dict[str, object]:
    return {
        "length_scale": scaling.length_scale,
        "output_scale": scaling.output_scale,
        "output_tokens": scaling.output_tokens,
        "max_input_tokens": scaling.max_input_tokens,
        "seed": seed,
    }
