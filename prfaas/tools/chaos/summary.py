"""The human summary of a chaos or soak run (result.json has everything; this is what to read)."""

from __future__ import annotations

from typing import Any


def _slope(slope: dict[str, Any] | None, unit: str) -> str:
    if slope is None:
        return "n/a"
    flag = "flat" if slope["flat"] else "GROWING"
    return f"{slope['per_min']:+.2f} ± {slope['stderr_per_min']:.2f} {unit}/min ({flag})"


def summary_text(result: dict[str, Any]) -> str:
    schedule, verdict = result["schedule"], result["verdict"]
    lines = [
        f"{'soak' if result['options']['soak'] else 'chaos'} run: seed {schedule['seed']}, "
        f"{schedule['duration_s']:g} s, {len(schedule['faults'])} faults, "
        f"{schedule['workload']['rate_rps']:g} req/s: {verdict['requests']} requests, "
        f"{verdict['succeeded']} ok -> {'PASSED' if verdict['passed'] else 'FAILED'}",
        f"baseline goodput ratio {verdict['baseline']['goodput_ratio']:.2f} "
        f"({verdict['baseline']['requests']} requests, slow bound "
        f"{verdict['baseline']['slow_bound_s']:.1f} s)",
        "checks:",
    ]
    for name, check in verdict["checks"].items():
        lines.append(f"  {name:15s} {'pass' if check['passed'] else 'FAIL'}")
    lines.append(f"failures by cause: {verdict['failures_by_cause'] or 'none'}")
    lines.append(f"supervisor restarts: {verdict['checks']['deployment_up']['restarts']}")
    recoveries = verdict["checks"]["recovered"]["faults"]
    if recoveries:
        lines.append("faults:")
    for fault, rec in zip(verdict["per_fault"], recoveries, strict=True):
        back = f"back after {rec['after_s']:g} s" if rec["recovered"] else "NOT back"
        lines.append(f"  {fault['fault']}: failures {fault['failures'] or 'none'}; {back}")
    failed_actions = [e for e in result["events"] if not e["ok"]]
    for event in failed_actions:
        lines.append(f"  action failed: {event['action']} {event['target']}: {event['detail']}")
    lines.append("processes (RSS MiB first -> last, slope after warm-up; fds last, slope):")
    for s in result["resources"]:
        lines.append(
            f"  {s['name']:12s} pid {s['pid']:<7d} {s['rss_mb_first']:7.1f} -> "
            f"{s['rss_mb_last']:7.1f}  {_slope(s['rss_slope'], 'MiB')};  fds {s['fds_last']:g} "
            f"{_slope(s['fd_slope'], 'fd')}"
        )
    unexplained = verdict["checks"]["all_explained"]["unexplained"]
    silent = verdict["checks"]["no_silent_loss"]["silent"]
    for label, items in (("unexplained", unexplained), ("silent", silent)):
        for f in items[:10]:
            lines.append(f"  {label}: request {f['index']} @{f['start_s']} s: {f['error']}")
    return "\n".join(lines) + "\n"
