"""Fig. 5 style plots of the prfaas grid: Λ_max against N_p (best t per split) and against t.

Imports matplotlib lazily with the Agg backend, so the JSON path of `prfaas plan` never loads it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from prfaas.planner.search import Grid, OperatingPoint


def write_fig5(grid: Grid, best: OperatingPoint, out_dir: Path, title: str) -> list[Path]:
    """Write `<title>_lambda_vs_np.png` and `<title>_lambda_vs_t.png`; return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []

    fig, ax = plt.subplots(figsize=(5, 3.5))
    t_index = int(np.argmin(np.abs(grid.thresholds - best.threshold)))
    ax.plot(
        grid.n_p_values, grid.lambda_max[:, t_index], marker="o", label=f"t = {best.threshold:.0f}"
    )
    ax.plot(grid.n_p_values, grid.lambda_max.max(axis=1), ls="--", label="best t per split")
    ax.axvline(best.n_p, color="grey", lw=0.8)
    ax.set_xlabel("N_p (PD prefill instances; N_d = rest)")
    ax.set_ylabel("Λ_max (req/s)")
    ax.set_title(f"{title}: Λ_max vs N_p")
    ax.legend()
    fig.tight_layout()
    paths.append(out_dir / f"{title}_lambda_vs_np.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 3.5))
    row = int(np.flatnonzero(grid.n_p_values == best.n_p)[0])
    ax.plot(grid.thresholds / 1000, grid.lambda_max[row], label=f"N_p = {best.n_p}")
    ax.axvline(best.threshold / 1000, color="grey", lw=0.8)
    ax.set_xlabel("threshold t (K tokens)")
    ax.set_ylabel("Λ_max (req/s)")
    ax.set_title(f"{title}: Λ_max vs t")
    ax.legend()
    fig.tight_layout()
    paths.append(out_dir / f"{title}_lambda_vs_t.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)
    return paths
