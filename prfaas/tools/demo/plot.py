"""The demo's one figure: throughput and TTFT P90 per policy, side by side, at one offered load."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from prfaas.tools.loadgen.results import Summary  # noqa: E402

COLOURS = {"prfaas": "tab:green", "homogeneous-pd": "tab:red", "naive-hetero": "tab:blue"}


def policy_figure(
    summaries: dict[str, Summary],
    offered_rps: float,
    planned_rps: dict[str, float] | None = None,
    link_gbps: float = 1.0,
) -> plt.Figure:
    """Two bar panels (completed req/s with the offered rate as a line and, with `planned_rps`,
    the planner's Λ_max per policy as a black tick; TTFT P90 of the served requests, seconds)."""
    names = list(summaries)
    colours = [COLOURS.get(n, "tab:gray") for n in names]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 4))
    throughput = [summaries[n].throughput_rps for n in names]
    left.bar(names, throughput, color=colours)
    left.axhline(offered_rps, color="black", linestyle="--", label=f"offered {offered_rps:.1f}")
    if planned_rps:
        planned = [planned_rps[n] for n in names]
        left.scatter(names, planned, marker="_", s=900, color="black", label="planned Λ")
    left.set_title("Throughput (higher is better)")
    left.set_ylabel("completed requests / s")
    left.legend(loc="upper right")
    ttft = [summaries[n].ttft_p90_s or 0.0 for n in names]
    right.bar(names, ttft, color=colours)
    right.set_title("TTFT P90 of served requests (lower is better)")
    right.set_ylabel("seconds")
    for ax, values, fmt in ((left, throughput, "{:.2f}"), (right, ttft, "{:.2f} s")):
        for i, v in enumerate(values):
            ax.annotate(fmt.format(v), (i, v), ha="center", va="bottom")
        top = [offered_rps, *(planned_rps or {}).values()] if ax is left else []
        ax.set_ylim(0, 1.2 * max([*values, *top, 1e-9]))
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(
        f"Routing policies at {offered_rps:.1f} req/s offered "
        f"(emulated: PrfaaS cluster H200, PD cluster H20, {link_gbps:g} Gbit/s link)"
    )
    fig.tight_layout()
    return fig


def policy_bars(
    summaries: dict[str, Summary],
    offered_rps: float,
    path: Path,
    planned_rps: dict[str, float] | None = None,
    link_gbps: float = 1.0,
) -> Path:
    """`policy_figure` written as a PNG."""
    fig = policy_figure(summaries, offered_rps, planned_rps, link_gbps)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
