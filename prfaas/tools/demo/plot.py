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
    the planner's Λ_max per policy as a black tick; TTFT P90 over all sent requests, seconds)."""
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
    for i, v in enumerate(throughput):
        left.annotate(f"{v:.2f}", (i, v), ha="center", va="bottom")
    top = [offered_rps, *(planned_rps or {}).values()]
    left.set_ylim(0, 1.2 * max([*throughput, *top, 1e-9]))
    _ttft_panel(right, [summaries[n] for n in names], names, colours)
    for ax in (left, right):
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(
        f"Routing policies at {offered_rps:.1f} req/s offered "
        f"(emulated: PrfaaS cluster H200, PD cluster H20, {link_gbps:g} Gbit/s link)"
    )
    fig.tight_layout()
    return fig


def _ttft_panel(
    ax: plt.Axes, summaries: list[Summary], names: list[str], colours: list[str]
) -> None:
    """TTFT P90 over every request sent (a refused request never gets a first token, so it counts
    as infinitely late): a policy that left over 10 % unanswered gets a hatched bar above the
    others, labelled ∞ with its share of failed requests, instead of a P90 of only the requests it chose
    to serve."""
    finite = [s.ttft_p90_all_sent_s for s in summaries if s.ttft_p90_all_sent_s is not None]
    ceiling = 1.15 * max([*finite, 1e-9]) if finite else 1.0
    for i, (s, colour) in enumerate(zip(summaries, colours, strict=True)):
        value = s.ttft_p90_all_sent_s
        if value is not None:
            ax.bar(names[i], value, color=colour)
            ax.annotate(f"{value:.2f} s", (i, value), ha="center", va="bottom")
        else:
            ax.bar(names[i], ceiling, color="white", edgecolor=colour, hatch="//")
            share = s.failed / s.requests if s.requests else 0.0
            ax.annotate(f"∞\n({share:.0%} failed)", (i, ceiling), ha="center", va="bottom")
    ax.set_ylim(0, 1.3 * ceiling)
    ax.set_title("TTFT P90, all sent requests (lower is better)")
    ax.set_ylabel("seconds")


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
