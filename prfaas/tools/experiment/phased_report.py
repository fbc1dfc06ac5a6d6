"""Outputs of `prfaas experiment --phases` (phased.py): phased.json, phased.md and phased.png."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from prfaas.tools.experiment.phased import run_phased  # noqa: E402
from prfaas.tools.loadgen.phases import LengthClasses  # noqa: E402

BUCKET_S = 10.0


def _mix(long_fraction: float) -> str:
    return "long-heavy" if long_fraction >= 0.5 else "short-heavy"


def throughput_series(records: list[dict[str, Any]], bucket_s: float = BUCKET_S) -> list:
    """(bucket start, successful completions per second in it) over the run."""
    ends = [r["start_s"] + r["e2e_s"] for r in records if r["ok"] and r["e2e_s"] is not None]
    if not ends:
        return []
    n = int(max(ends) // bucket_s) + 1
    counts = [0] * n
    for t in ends:
        counts[int(t // bucket_s)] += 1
    return [(k * bucket_s, c / bucket_s) for k, c in enumerate(counts)]


def plot(doc: dict[str, Any], path: Path) -> Path:
    fig, axes = plt.subplots(3, 1, figsize=(10, 8), sharex=True)
    fig.suptitle("Long-term planner under a changing mix: PD roles, t and throughput over time\n"
                 "(prfaas policy, emulated backend; shaded: phases by send time)")  # fmt: skip
    for p in doc["per_phase"]:
        color = "tab:orange" if p["long_fraction"] >= 0.5 else "tab:blue"
        for ax in axes:
            ax.axvspan(p["start_s"], p["end_s"], color=color, alpha=0.08)
        axes[0].text((p["start_s"] + p["end_s"]) / 2, 0.2, _mix(p["long_fraction"]),
                     ha="center", fontsize=9)  # fmt: skip
    s = doc["samples"]
    ts = [x["t_s"] for x in s]
    axes[0].step(ts, [x["n_p"] for x in s], where="post", label="N_p (PD-P)")
    axes[0].step(ts, [x["n_d"] for x in s], where="post", label="N_d (PD-D)")
    axes[0].set_ylabel("local PD workers")
    axes[0].legend(loc="upper right")
    axes[1].step(ts, [x["threshold"] for x in s], where="post", color="tab:green")
    axes[1].set_ylabel("threshold t (tokens)")
    series = throughput_series(doc["records"])
    axes[2].step([t for t, _ in series], [v for _, v in series], where="post",
                 label=f"completed (per {BUCKET_S:.0f} s)")  # fmt: skip
    axes[2].hlines([p["offered_rps"] for p in doc["per_phase"]],
                   [p["start_s"] for p in doc["per_phase"]],
                   [p["end_s"] for p in doc["per_phase"]], colors="k", linestyles="dashed",
                   label="offered")  # fmt: skip
    axes[2].set_ylabel("requests/s")
    axes[2].set_xlabel("time since the first send (s)")
    axes[2].legend(loc="upper right")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def markdown(doc: dict[str, Any]) -> str:
    lines = [
        f"requests {doc['requests']}, failed {doc['failed']} {doc['errors'] or ''}, "
        f"throughput {doc['throughput_rps']:.3f} req/s; load average "
        f"{doc['load_average']['start'][0]:.1f} -> {doc['load_average']['end'][0]:.1f}",
        "",
        "| phase | mix | window (s) | offered req/s | requests | failed | TTFT mean s | "
        "completed/s in window |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for p in doc["per_phase"]:
        ttft = "-" if p["ttft_mean_s"] is None else f"{p['ttft_mean_s']:.2f}"
        lines.append(f"| {p['phase']} | {_mix(p['long_fraction'])} ({p['long_fraction']:.0%} long) "
                     f"| {p['start_s']:.0f}-{p['end_s']:.0f} | {p['offered_rps']:.2f} | "
                     f"{p['requests']} | {p['failed']} | {ttft} | "
                     f"{p['completions_per_s_in_window']:.3f} |")  # fmt: skip
    lines += ["", "planner decisions that changed roles or t (router.log):", ""]
    last = None
    for d in doc["decisions"]:
        key = (d["n_p"], d["n_d"], repr(d["threshold"]), d["actions"])
        if key != last:
            lines.append(f"- {d['time']} {d['reason']} t={d['threshold']:.0f} N_p={d['n_p']} "
                         f"N_d={d['n_d']} rate={d['rate_rps']:.2f}/s actions={d['actions']}")  # fmt: skip
        last = key
    lines += ["", "role changes (worker logs):", ""] + [f"- {x}" for x in doc["role_changes"]]
    return "\n".join(lines) + "\n"


def run_and_report(args: argparse.Namespace) -> int:
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    doc = run_phased(
        args.phases, out, port_base=args.port_base or 23000,
        pd_roles=[r for r in args.phase_pd_roles.split(",") if r],
        long_period_s=args.phase_long_period, time_factor=args.time_factor or 0.1,
        length_scale=args.phase_length_scale, output_tokens=args.output_tokens or 16,
        classes=LengthClasses(),
    )  # fmt: skip
    (out / "phased.json").write_text(json.dumps(doc, indent=1))
    md = markdown(doc)
    (out / "phased.md").write_text(md)
    plot(doc, out / "phased.png")
    print(md)
    print(f"wrote {out / 'phased.json'}, {out / 'phased.md'}, {out / 'phased.png'}")
    return 1 if doc["failed"] else 0
