"""The chaos run's assertions, computed from what the clients saw and what the workers report.

Checks (each passes or fails with the offending requests/workers named):
  no_hung          every request ended (success or error) within the workload's bound
  no_silent_loss   every failure carries an error event: an HTTP status with a message or an SSE
                   error; a broken connection counts only while the router itself is faulted;
                   a 200 stream that ends without tokens, or with fewer tokens than asked, is a loss
  all_explained    every failure falls in a fault's window (its duration plus `recovery_s`) and is
                   counted against that fault with its cause
  leak_free        every worker reports an empty leak report and no live request at the end
  recovered        after each fault, throughput is back within 10 % of the pre-fault baseline
                   within `recovery_s` of the fault's end

Throughput is measured as goodput per offered request: the share of the requests *sent* in a
window that succeed within `slow_bound_s` (3x the baseline's p95 latency). Under an open-loop load
below capacity served throughput is the arrival rate times that share, and dividing by the
window's own arrivals removes the Poisson noise of a short window.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from prfaas.tools.chaos.schedule import Fault, Schedule
from prfaas.tools.loadgen.client import RequestRecord

RECOVERY_FRACTION = 0.9  # throughput back within 10 % of the baseline
WINDOW_S = 10.0  # goodput window
MIN_WINDOW_REQUESTS = 3
CONNECTION = "connection"  # cause of a failure with no HTTP status (connect/read error)
SILENT = ("no tokens", "truncated")  # causes that are losses without an error event


def cause_of(record: RequestRecord) -> str | None:
    """Why a request failed, as a short countable label; None when it succeeded in full."""
    error = record.error
    if error is None:
        if record.completion_tokens != record.output_tokens:
            return "truncated"
        return None
    if error.startswith("timeout"):
        return "timeout"
    if error == "no tokens received":
        return "no tokens"
    if error.startswith("stream error: "):
        # Router SSE errors read "CODE: message" (e.g. "transfer_failed: ..."): keep the code.
        code = re.match(r"[A-Za-z_.\-]+(?=:)", error[len("stream error: ") :])
        return f"SSE {code.group(0) if code else 'error'}"
    if record.status:
        return f"HTTP {record.status}"
    return CONNECTION


def _end_s(record: RequestRecord) -> float:
    return record.start_s + (record.e2e_s or 0.0)


def attribute(record: RequestRecord, faults: Sequence[Fault], recovery_s: float) -> int | None:
    """The first fault whose window [start, end + recovery_s] overlaps the request's life."""
    for index, fault in enumerate(faults):
        if record.start_s <= fault.end_s + recovery_s and _end_s(record) >= fault.start_s:
            return index
    return None


def _good(record: RequestRecord, slow_bound_s: float) -> bool:
    return cause_of(record) is None and (record.e2e_s or 0.0) <= slow_bound_s


def _ratio(
    records: Sequence[RequestRecord], lo: float, hi: float, bound: float
) -> tuple[int, float]:
    sent = [r for r in records if lo <= r.start_s < hi]
    if not sent:
        return 0, 0.0
    return len(sent), sum(_good(r, bound) for r in sent) / len(sent)


def recovery(
    records: Sequence[RequestRecord], schedule: Schedule, baseline: float, bound: float
) -> list[dict[str, Any]]:
    """Per fault: the first goodput window starting after the fault's end (1 s steps) within
    `recovery_s` and before the next fault, whose ratio is >= 90 % of the baseline's."""
    out = []
    starts = sorted(f.start_s for f in schedule.faults)
    for fault in schedule.faults:
        later = [s for s in starts if s >= fault.end_s]
        horizon = min([fault.end_s + schedule.recovery_s, schedule.duration_s, *later[:1]])
        found: dict[str, Any] | None = None
        measured = False
        t = fault.end_s
        while t + WINDOW_S <= horizon + 1e-9:
            n, ratio = _ratio(records, t, t + WINDOW_S, bound)
            if n >= MIN_WINDOW_REQUESTS:
                measured = True
                if ratio >= RECOVERY_FRACTION * baseline:
                    found = {"after_s": round(t + WINDOW_S - fault.end_s, 1), "ratio": ratio}
                    break
            t += 1.0
        out.append(
            {
                "fault": fault.label(),
                "recovered": found is not None,
                "measured": measured,
                **(found or {}),
            }
        )
    return out


def judge(
    records: Sequence[RequestRecord],
    schedule: Schedule,
    leaks: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    faults = schedule.faults
    first_fault = min((f.start_s for f in faults), default=schedule.duration_s)
    base = [r for r in records if r.start_s < first_fault and cause_of(r) is None]
    p95 = float(np.percentile([r.e2e_s or 0.0 for r in base], 95)) if base else 0.0
    slow_bound_s = max(3.0 * p95, 2.0)
    n_base, baseline = _ratio(records, 0.0, first_fault, slow_bound_s)

    failures: list[dict[str, Any]] = []
    for r in records:
        cause = cause_of(r)
        if cause is None:
            continue
        index = attribute(r, faults, schedule.recovery_s)
        fault = faults[index] if index is not None else None
        silent = cause in SILENT or (
            cause == CONNECTION and (fault is None or fault.target != "router")
        )
        failures.append(
            {
                "index": r.index,
                "start_s": round(r.start_s, 2),
                "cause": cause,
                "error": r.error,
                "fault": index,
                "silent": silent,
            }
        )
    per_fault = []
    for index, fault in enumerate(faults):
        mine = Counter(f["cause"] for f in failures if f["fault"] == index)
        per_fault.append({"fault": fault.label(), "failures": dict(mine)})

    # Hung: the client gave up, or the request outlived the bound (a stream trickling forever).
    bound = schedule.workload.timeout_s
    hung = [
        {"index": r.index, "start_s": round(r.start_s, 2), "e2e_s": r.e2e_s, "error": r.error}
        for r in records
        # An error answer (a status, an SSE error) ended the request: failed, not hung; those are
        # judged by the explained/silent checks. No answer and no error means it never ended.
        if cause_of(r) == "timeout"
        or (r.e2e_s is None and not r.error)
        or (r.e2e_s is not None and r.e2e_s > bound)
    ]
    silent_losses = [f for f in failures if f["silent"]]
    unexplained = [f for f in failures if f["fault"] is None]
    leaky = {w: v for w, v in leaks.items() if v.get("leak_report") or v.get("num_live_requests")}
    recoveries = recovery(records, schedule, baseline, slow_bound_s)
    checks: dict[str, dict[str, Any]] = {
        "no_hung": {"passed": not hung, "hung": hung},
        "no_silent_loss": {"passed": not silent_losses, "silent": silent_losses},
        "all_explained": {"passed": not unexplained, "unexplained": unexplained},
        "leak_free": {"passed": not leaky and bool(leaks), "workers": leaks},
        "recovered": {
            "passed": all(r["recovered"] for r in recoveries) and (n_base > 0 or not faults),
            "faults": recoveries,
        },
    }
    return {
        "passed": all(c["passed"] for c in checks.values()),
        "requests": len(records),
        "succeeded": sum(cause_of(r) is None for r in records),
        "failures_by_cause": dict(Counter(f["cause"] for f in failures)),
        "baseline": {"requests": n_base, "goodput_ratio": baseline, "slow_bound_s": slow_bound_s},
        "per_fault": per_fault,
        "checks": checks,
        "failures": failures,
    }
