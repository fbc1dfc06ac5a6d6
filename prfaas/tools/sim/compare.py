"""The simulator against the running system: `python -m prfaas.tools.sim.compare MEASURED SIMULATED`.

Both files are `experiment.json` documents — MEASURED from `prfaas experiment`, SIMULATED from
`prfaas sim --experiment` with the same options — so every rate point is the same requests
(`workload_for` with the experiment's seeds). Prints, per policy and rate point, the measured and
simulated throughput, TTFT mean / P90 and offload fraction, each error against issue 18's goals
(throughput within 10 %, TTFT within 15 %, offload within 0.05), and, when both have a fluctuation
run, its phases and the threshold's path through the change (rise and return within 10 s,
`threshold_trajectory`); `--stages` adds, per point, the mean and P90 of each request stage both
sides record (where a TTFT difference comes from); `--json` writes the rate-point rows. Exit
status 0 whatever the errors: this reports, it does not judge a run.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from prfaas.tools.experiment.threshold_trajectory import Trajectory, trajectory

THROUGHPUT_GOAL = 0.10
TTFT_GOAL = 0.15
OFFLOAD_GOAL = 0.05
TRAJECTORY_GOAL_S = 10.0


@dataclass(frozen=True)
class PointComparison:
    policy: str
    offered_rps: float
    measured: dict[str, float | None]
    simulated: dict[str, float | None]
    errors: dict[str, float | None]
    """Relative errors (simulated / measured - 1) for throughput and TTFT; the absolute
    difference for the offload fraction; None where either side lacks the figure."""
    within: dict[str, bool | None]


_FIELDS = ("throughput_rps", "ttft_mean_s", "ttft_p90_s", "offload_fraction")


def _relative(measured: float | None, simulated: float | None) -> float | None:
    if measured is None or simulated is None or measured == 0:
        return None
    return simulated / measured - 1.0


def compare_point(
    policy: str, measured: dict[str, Any], simulated: dict[str, Any]
) -> PointComparison:
    """One rate point (the `points[policy][i]` dicts of both documents)."""
    m = {k: measured.get(k) for k in _FIELDS}
    s = {k: simulated.get(k) for k in _FIELDS}
    errors: dict[str, float | None] = {
        k: _relative(m[k], s[k]) for k in ("throughput_rps", "ttft_mean_s", "ttft_p90_s")
    }
    mo, so = m["offload_fraction"], s["offload_fraction"]
    errors["offload_fraction"] = None if mo is None or so is None else so - mo
    goals = {"throughput_rps": THROUGHPUT_GOAL, "ttft_mean_s": TTFT_GOAL, "ttft_p90_s": TTFT_GOAL,
             "offload_fraction": OFFLOAD_GOAL}  # fmt: skip
    within = {k: None if e is None else abs(e) <= goals[k] for k, e in errors.items()}
    return PointComparison(policy, float(measured["offered_rps"]), m, s, errors, within)


def pairs(
    measured: dict[str, Any], simulated: dict[str, Any]
) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(policy, measured point, simulated point) for every rate point present in both documents,
    paired by offered rate (within 1 %)."""
    for policy, points in measured.get("points", {}).items():
        sim_points = simulated.get("points", {}).get(policy, [])
        for point in points:
            rate = float(point["offered_rps"])
            twin = next((p for p in sim_points
                         if abs(float(p["offered_rps"]) - rate) <= 0.01 * rate), None)  # fmt: skip
            if twin is not None:
                yield policy, point, twin


def compare(measured: dict[str, Any], simulated: dict[str, Any]) -> list[PointComparison]:
    """Every rate point present in both documents (`pairs`), compared."""
    return [compare_point(policy, m, s) for policy, m, s in pairs(measured, simulated)]


def fluctuation_phases(measured: dict[str, Any], simulated: dict[str, Any]) -> list[str]:
    """Markdown rows: TTFT mean per phase of the fluctuation run, measured -> simulated."""
    mf, sf = measured.get("fluctuation"), simulated.get("fluctuation")
    if not (mf and sf):
        return []
    lines = ["| phase | measured TTFT mean | simulated | error |", "| --- | ---: | ---: | ---: |"]
    for phase in ("before", "during", "after", "recovered"):
        m = mf["phases"].get(phase, {}).get("ttft_mean_s")
        s = sf["phases"].get(phase, {}).get("ttft_mean_s")
        err = _relative(m, s)
        lines.append(f"| {phase} | {_num(m, 's')} | {_num(s, 's')} | {_pct(err)} |")
    m, s = mf["phases"].get("recovery_ratio"), sf["phases"].get("recovery_ratio")
    lines.append(f"| recovery ratio | {_num(m)} | {_num(s)} | |")
    return lines


def trajectory_rows(measured: dict[str, Any], simulated: dict[str, Any]) -> list[str]:
    """Markdown rows: the threshold's path through the change, measured -> simulated, with the
    difference of each time against issue 18's goal (the rise and the return within 10 s)."""
    mf, sf = measured.get("fluctuation"), simulated.get("fluctuation")
    if not (mf and sf):
        return []
    m, s = trajectory(mf), trajectory(sf)
    if m is None or s is None:
        return []
    lines = ["| threshold | measured | simulated | difference |", "| --- | ---: | ---: | ---: |"]
    times: tuple[tuple[str, str], ...] = (
        ("rises after the change", "rise_s"),
        ("first back at its base, in the change", "back_at_base_s"),
        ("settled at its base after the change", "settled_after_end_s"),
    )
    for label, key in times:
        a, b = getattr(m, key), getattr(s, key)
        diff = None if a is None or b is None else b - a
        text = "–" if diff is None else f"{diff:+.1f} s"
        bold = diff is not None and abs(diff) > TRAJECTORY_GOAL_S
        lines.append(f"| {label} | {_num(a, 's')} | {_num(b, 's')} | "
                     f"{f'**{text}**' if bold else text} |")  # fmt: skip
    lines.append(f"| peak (at) | {_peak(m)} | {_peak(s)} | |")
    return lines


def _peak(t: Trajectory) -> str:
    return f"{t.peak_tokens:,.0f} ({_num(t.peak_at_s, 's')})"


def stage_rows(measured: dict[str, Any], simulated: dict[str, Any]) -> list[str]:
    """Markdown rows per paired point: each stage both record, mean and P90, measured -> simulated
    (the simulator's stages: `analysis.stages`)."""
    lines = []
    for policy, point, twin in pairs(measured, simulated):
        ms, ss = point.get("stages") or {}, twin.get("stages") or {}
        common = [k for k in ms if k in ss]
        if not common:
            continue
        lines += [
            "",
            f"{policy} @ {float(point['offered_rps']):.2f}, request stages:",
            "| stage | measured mean / P90 | simulated mean / P90 |",
            "| --- | --- | --- |",
        ]
        for k in common:
            lines.append(f"| {k} | {_num(ms[k]['mean_s'])} / {_num(ms[k]['p90_s'])} s "
                         f"| {_num(ss[k]['mean_s'])} / {_num(ss[k]['p90_s'])} s |")  # fmt: skip
    return lines


def _num(x: float | None, unit: str = "") -> str:
    return "–" if x is None else f"{x:.2f}{(' ' + unit) if unit else ''}"


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{x * 100:+.1f} %"


def _judged(row: PointComparison, key: str, text: str) -> str:
    return f"**{text}**" if row.within[key] is False else text  # bold: outside the goal


def markdown(rows: list[PointComparison]) -> list[str]:
    head = ("| policy @ offered | throughput measured → simulated | error | TTFT mean | error "
            "| TTFT P90 | error | offload | diff |")  # fmt: skip
    lines = [head, "| --- | --- | ---: | --- | ---: | --- | ---: | --- | ---: |"]
    for r in rows:
        m, s, e = r.measured, r.simulated, r.errors
        lines.append(
            f"| {r.policy} @ {r.offered_rps:.2f} "
            f"| {_num(m['throughput_rps'])} → {_num(s['throughput_rps'])} "
            f"| {_judged(r, 'throughput_rps', _pct(e['throughput_rps']))} "
            f"| {_num(m['ttft_mean_s'])} → {_num(s['ttft_mean_s'])} s "
            f"| {_judged(r, 'ttft_mean_s', _pct(e['ttft_mean_s']))} "
            f"| {_num(m['ttft_p90_s'])} → {_num(s['ttft_p90_s'])} s "
            f"| {_judged(r, 'ttft_p90_s', _pct(e['ttft_p90_s']))} "
            f"| {_num(m['offload_fraction'])} → {_num(s['offload_fraction'])} "
            f"| {_judged(r, 'offload_fraction', _num(e['offload_fraction']))} |"
        )
    counts = {k: sum(1 for r in rows if r.within[k]) for k in _FIELDS}
    known = {k: sum(1 for r in rows if r.within[k] is not None) for k in _FIELDS}
    lines.append("")
    lines.append("Within the goal: " + ", ".join(f"{k} {counts[k]}/{known[k]}" for k in _FIELDS))
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m prfaas.tools.sim.compare",
                                     description=__doc__.splitlines()[0])  # fmt: skip
    parser.add_argument("measured", type=Path, help="experiment.json of `prfaas experiment`")
    parser.add_argument("simulated", type=Path, help="experiment.json of `prfaas sim --experiment`")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--stages", action="store_true",
                        help="also each point's request stages, measured -> simulated")  # fmt: skip
    args = parser.parse_args(argv)
    measured = json.loads(args.measured.read_text())
    simulated = json.loads(args.simulated.read_text())
    rows = compare(measured, simulated)
    phases = fluctuation_phases(measured, simulated)
    if phases:
        phases += ["", *trajectory_rows(measured, simulated)]
    if not (rows or phases):
        print("no rate point and no fluctuation run in both documents (same --multipliers and "
              "--duration?)", file=sys.stderr)  # fmt: skip
        return 2
    if rows:
        print("\n".join(markdown(rows)))
        if args.stages:
            print("\n".join(stage_rows(measured, simulated)))
    if phases:
        print(("\n" if rows else "") + "\n".join(phases))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
