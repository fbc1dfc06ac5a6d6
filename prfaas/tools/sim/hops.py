"""The machine's constants read from a recorded run, for the simulator: per-request hop latencies
(`prfaas sim --hops-from FILE`) and the decode step the emulated workers really took
(`--decode-step-from FILE`).

The simulator's decode engine applies calls at step boundaries (`DecodeTiming.step_boundary_calls`),
the running system's main TTFT floor. What it leaves out are hops: the gRPC call to a decode worker
and back, the worker's event loop handing the call to its compute thread, the client's HTTP request
and the streamed first token. On this machine they are not small (tens to hundreds of ms under
load), and they depend on the machine's load, not on the system, so they are not a default: they
are read from a recorded run, never fitted to a simulated result. From a point's JSON (`prfaas
experiment` / `prfaas bench serve`: the router's stage table and the client's per-request TTFTs):

- `admit_s` = mean(decode_admit) - step / 2: the admission's wait beyond the step in progress
  (half a step on average while the engine runs, which it does at a loaded point);
- `first_token_s` = mean(first_token) - max(mean(decode_admit), mean(prefill_queue +
  prefill_compute)) - mean(kv_transfer_exposed) - step / 2: the first token's release beyond its
  step boundary (the KV-ready call and the token's way back to the router). The prefill starts
  with the admission (router/two_worker_handshake.py), so the KV is complete after the later of
  the two;
- `client_s` = mean(client TTFT) - mean(router ttft): client -> router -> client, which the
  simulator (requests arrive at the router) does not contain at all.

Each is a constant per request: the simulator adds `admit_s` to every admission (the KV may
move only after it), `first_token_s` to every first token, and `client_s` to the TTFT and
end-to-end time the client sees. Only means are recorded (the stage table is a histogram), so the
hops' spread, and any correlation of hop latency with load inside a run, is not modelled.

The decode step: the emulated decode workers sleep their profile's step, but before c34c615 a
step of 0.8 s took 0.94-0.98 s per token on this loaded 2-core machine (issue 18's overloaded
180 s points: the emulator's own work was added to every step); their decode seats turned over
that much slower, and the router refused for lack of seats where the simulator, at the profile's
step, did not. The emulated step now holds the profile's, so this reads older runs.
`decode_step_from_point` is the mean time per output token after the first over the served
requests; the simulated engines take it as their step, while the planner (and so every rate
point) keeps the profile's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Hops:
    admit_s: float = 0.0
    first_token_s: float = 0.0
    client_s: float = 0.0
    source: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"admit_s": self.admit_s, "first_token_s": self.first_token_s,
                "client_s": self.client_s, "source": self.source}  # fmt: skip


def hops_from_point(point: dict[str, Any], step_s: float, source: str = "") -> Hops:
    """The three hop means of one recorded point (`stages` + `requests`), at decode step
    `step_s`."""
    st = point["stages"]

    def mean(stage: str) -> float:
        if stage not in st or not st[stage].get("count"):
            raise ValueError(f"{source or 'point'}: stage {stage!r} not recorded")
        return float(st[stage]["mean_s"])

    ttfts = [r["ttft_s"] for r in point["requests"]
             if r.get("ttft_s") is not None and not r.get("error")]  # fmt: skip
    if not ttfts:
        raise ValueError(f"{source or 'point'}: no request with a TTFT")
    # The admission overlaps the prefill's queue and compute (router/two_worker_handshake.py):
    # the KV is complete at the later of the two branches (from means: an approximation).
    kv_complete = max(mean("decode_admit"), mean("prefill_queue") + mean("prefill_compute"))
    release = mean("first_token") - kv_complete - mean("kv_transfer_exposed")
    return Hops(
        admit_s=mean("decode_admit") - step_s / 2,
        first_token_s=release - step_s / 2,
        client_s=float(np.mean(ttfts)) - mean("ttft"),
        source=source,
    )


def hops_from_file(path: str | Path, step_s: float) -> Hops:
    return hops_from_point(json.loads(Path(path).read_text()), step_s, str(path))


def decode_step_from_point(point: dict[str, Any], source: str = "") -> float:
    """Mean seconds per output token after the first, over the served requests with at least two
    tokens of one recorded point (`requests` with `ttft_s`, `e2e_s`, `output_tokens`)."""
    per_token = [
        (r["e2e_s"] - r["ttft_s"]) / (r["output_tokens"] - 1)
        for r in point["requests"]
        if not r.get("error") and r.get("ttft_s") is not None and r.get("e2e_s") is not None
        and (r.get("output_tokens") or 0) >= 2
    ]  # fmt: skip
    if not per_token:
        raise ValueError(f"{source or 'point'}: no served request with two output tokens")
    return float(np.mean(per_token))


def decode_step_from_file(path: str | Path) -> float:
    return decode_step_from_point(json.loads(Path(path).read_text()), str(path))
