"""PNG plots: TTFT CDFs (one line per run) and throughput / KV egress over time."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from prfaas.tools.loadgen.results import Results  # noqa: E402


def ttft_cdf(runs: dict[str, Results], path: str | Path) -> Path:
    """Empirical CDF of TTFT of successful requests, one line per named run."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, results in runs.items():
        ttft = np.sort([r.ttft_s for r in results.records if r.ok and r.ttft_s is not None])
        if ttft.size:
            ax.step(ttft, np.arange(1, ttft.size + 1) / ttft.size, where="post", label=name)
    ax.set_title("Time to first token, CDF (successful requests)")
    ax.set_xlabel("TTFT (s)")
    ax.set_ylabel("fraction of requests")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


def completions_per_second(results: Results, bin_s: float) -> tuple[np.ndarray, np.ndarray]:
    """(bin start, successful completions per second) over the run."""
    ends = np.array([r.start_s + r.e2e_s for r in results.records if r.ok and r.e2e_s is not None])
    if not ends.size:
        return np.zeros(0), np.zeros(0)
    edges = np.arange(0.0, ends.max() + bin_s, bin_s)
    counts, _ = np.histogram(ends, bins=edges)
    return edges[:-1], counts / bin_s


def timeline(runs: dict[str, Results], path: str | Path, bin_s: float = 1.0) -> Path:
    """Throughput (completions/s) over time and, when sampled, KV egress (MB/s) over time."""
    with_egress = any(len(r.egress) >= 2 for r in runs.values())
    fig, axes = plt.subplots(2 if with_egress else 1, 1, figsize=(7, 6 if with_egress else 3.5))
    axes = np.atleast_1d(axes)
    for name, results in runs.items():
        t, rate = completions_per_second(results, bin_s)
        axes[0].step(t, rate, where="post", label=name)
        if with_egress and len(results.egress) >= 2:
            ts = np.array([s.t_s for s in results.egress])
            sent = np.array([s.sent_bytes for s in results.egress])
            dt = np.diff(ts)
            mbps = np.divide(np.diff(sent), dt, out=np.zeros_like(dt), where=dt > 0) / 1e6
            axes[1].step(ts[1:], mbps, where="pre", label=name)
    axes[0].set_title(f"Completed requests per second ({bin_s:g} s bins)")
    axes[0].set_ylabel("completions/s")
    axes[0].legend()
    if with_egress:
        axes[1].set_title("KV bytes sent across the datacenter link")
        axes[1].set_ylabel("KV egress (MB/s)")
        axes[1].legend()
    axes[-1].set_xlabel("time since start (s)")
    for ax in axes:
        ax.grid(alpha=0.3)
    return _save(fig, path)


def _save(fig: plt.Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
