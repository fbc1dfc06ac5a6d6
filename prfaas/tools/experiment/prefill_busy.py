"""Where a prefill worker's time went, from a run's request spans (`PRFAAS_TRACE_FILE`).

`python -m prfaas.tools.experiment.prefill_busy SPANS.jsonl[.gz] [--experiment-profiles]` reads
every `prefill` span (prfaas/worker/spans.py: prefill_queued, prefill_started, prefill_done per
request, the worker's id and the prompt and cached tokens) and prints, per worker:
- busy: the union of its requests' compute intervals [started, done] (chunks of several requests
  share steps, so the intervals overlap and are merged, never summed);
- idle with work: time in which some request had arrived but none was computing;
- with `--experiment-profiles`, the profile's seconds for the tokens each worker computed (the
  experiment's scaled H200 profile for `prfaas-*` workers, the H20 one otherwise), and busy over
  that: a worker whose busy time exceeds its requests' profile work serves less than the planner
  and the simulator assume. This is how issue 18 found the emulator's own overheads (busy 4.7-5.3 %
  over the profile at load up to 6; 1.000 after the fixes).
Run the experiment with `PRFAAS_TRACE_FILE=PATH` in its environment: every process it starts
appends its spans to PATH.
"""

from __future__ import annotations

import argparse
import gzip
import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class PrefillInterval:
    """One request's prefill at one worker (wall-clock seconds)."""

    queued_s: float
    started_s: float
    done_s: float
    computed_tokens: int


@dataclass(frozen=True)
class WorkerBusy:
    worker_id: str
    requests: int
    span_s: float
    """First arrival to last compute end."""
    busy_s: float
    idle_with_work_s: float
    queue_mean_s: float
    queue_max_s: float
    profile_work_s: float | None = None

    @property
    def busy_over_profile(self) -> float | None:
        if not self.profile_work_s:
            return None
        return self.busy_s / self.profile_work_s


def _seconds(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def read_spans(path: Path) -> Iterator[dict[str, Any]]:
    opener: Callable[..., Any] = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def prefill_intervals(spans: Iterable[dict[str, Any]]) -> dict[str, list[PrefillInterval]]:
    """worker id -> its completed prefills (spans without a start, i.e. failed, are left out)."""
    out: dict[str, list[PrefillInterval]] = defaultdict(list)
    for span in spans:
        if span.get("name") != "prefill":
            continue
        events = {e["name"]: _seconds(e["timestamp"]) for e in span.get("events", [])}
        if "prefill_started" not in events or "prefill_done" not in events:
            continue
        attrs = span.get("attributes", {})
        tokens = int(attrs.get("prfaas.prompt_tokens", 0)) - int(
            attrs.get("prfaas.cached_tokens", 0)
        )
        out[attrs["prfaas.worker_id"]].append(
            PrefillInterval(
                events.get("prefill_queued", events["prefill_started"]),
                events["prefill_started"],
                events["prefill_done"],
                tokens,
            )
        )
    return dict(out)


def busy_time(intervals: list[PrefillInterval]) -> float:
    """Length of the union of the compute intervals."""
    total, end = 0.0, float("-inf")
    for iv in sorted(intervals, key=lambda iv: iv.started_s):
        if iv.started_s > end:
            total += iv.done_s - iv.started_s
            end = iv.done_s
        elif iv.done_s > end:
            total += iv.done_s - end
            end = iv.done_s
    return total


def idle_with_work(intervals: list[PrefillInterval]) -> float:
    """Time in which some request waited (queued, not started) and none was computing."""
    marks: list[tuple[float, int, int]] = []  # (time, 0 = waiting / 1 = computing, +1 / -1)
    for iv in intervals:
        marks += [(iv.queued_s, 0, 1), (iv.started_s, 0, -1)]
        marks += [(iv.started_s, 1, 1), (iv.done_s, 1, -1)]
    marks.sort(key=lambda m: (m[0], -m[2]))  # at one instant, starts before ends
    waiting = computing = 0
    idle, last = 0.0, None
    for t, kind, delta in marks:
        if last is not None and waiting > 0 and computing == 0:
            idle += t - last
        if kind == 0:
            waiting += delta
        else:
            computing += delta
        last = t
    return idle


def summarize(
    by_worker: dict[str, list[PrefillInterval]],
    profile_seconds: Callable[[str, int], float] | None = None,
) -> list[WorkerBusy]:
    """One row per worker; `profile_seconds(worker_id, tokens)` adds the profile's work."""
    rows = []
    for worker_id, intervals in sorted(by_worker.items()):
        waits = [iv.started_s - iv.queued_s for iv in intervals]
        work = None
        if profile_seconds is not None:
            work = sum(profile_seconds(worker_id, iv.computed_tokens) for iv in intervals)
        rows.append(
            WorkerBusy(
                worker_id,
                len(intervals),
                max(iv.done_s for iv in intervals) - min(iv.queued_s for iv in intervals),
                busy_time(intervals),
                idle_with_work(intervals),
                sum(waits) / len(waits),
                max(waits),
                work,
            )
        )
    return rows


def experiment_profiles() -> Callable[[str, int], float]:
    """Profile seconds of `prfaas experiment`'s scaled profiles: H200 for `prfaas-*` workers."""
    from prfaas.tools.experiment.scale import PD_PROFILE, PRFAAS_PROFILE, Scale, scaled_profile
    from prfaas.tools.sim.profile import ProfileLookup

    scale = Scale()
    h200 = ProfileLookup(scaled_profile(PRFAAS_PROFILE, scale))
    h20 = ProfileLookup(scaled_profile(PD_PROFILE, scale))
    return lambda worker_id, tokens: (h200 if worker_id.startswith("prfaas") else h20).seconds(
        tokens
    )


def render(rows: list[WorkerBusy]) -> str:
    lines = [
        "| worker | requests | span | busy | busy % | idle with work | queue mean / max "
        "| profile work | busy / profile |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |",
    ]
    for r in rows:
        ratio = r.busy_over_profile
        lines.append(
            f"| {r.worker_id} | {r.requests} | {r.span_s:.1f} s | {r.busy_s:.1f} s "
            f"| {100 * r.busy_s / r.span_s:.1f} % | {r.idle_with_work_s:.2f} s "
            f"| {r.queue_mean_s:.2f} / {r.queue_max_s:.2f} s "
            f"| {'–' if r.profile_work_s is None else f'{r.profile_work_s:.1f} s'} "
            f"| {'–' if ratio is None else f'{ratio:.3f}'} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m prfaas.tools.experiment.prefill_busy", description=__doc__.split("\n")[0]
    )
    parser.add_argument("spans", type=Path, help="a PRFAAS_TRACE_FILE (.jsonl or .jsonl.gz)")
    parser.add_argument("--experiment-profiles", action="store_true",
                        help="compare with the profile work at `prfaas experiment`'s scale")  # fmt: skip
    args = parser.parse_args(argv)
    by_worker = prefill_intervals(read_spans(args.spans))
    if not by_worker:
        print(f"no finished prefill spans in {args.spans}")
        return 1
    profiles = experiment_profiles() if args.experiment_profiles else None
    print(render(summarize(by_worker, profiles)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
