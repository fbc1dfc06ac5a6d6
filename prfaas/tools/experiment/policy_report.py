"""The policy comparison's outputs: experiment.json, experiment.md (measured against predicted, per
policy) and PNG plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

POLICIES = ("prfaas", "homogeneous-pd", "naive-hetero")


def _f(x: float | None, fmt: str = ".3f") -> str:
    return "–" if x is None else format(x, fmt)


def _mbit(x: float | None) -> str:
    return "–" if x is None else f"{x * 8 / 1e6:.1f}"


def summarize_policy(points: list[dict[str, Any]], common_rate: float) -> dict[str, Any]:
    from prfaas.tools.experiment.sweep import best_sustainable

    best = best_sustainable(points)
    top = max(points, key=lambda p: p["throughput_rps"] or 0.0, default=None)
    common = min(points, key=lambda p: abs(p["offered_rps"] - common_rate), default=None)
    peak = max((p["egress_peak_bytes_per_s"] or 0.0 for p in points), default=None)
    # Egress and offload at the best sustainable point, else at the highest-throughput one.
    at = best or top
    return {
        "max_sustainable_rps": best["throughput_rps"] if best else None,
        "max_sustainable_offered_rps": best["offered_rps"] if best else None,
        "max_measured_rps": top["throughput_rps"] if top else None,
        "at_common_load": common,
        "egress_offload_at": "sustainable" if best else "highest steady",
        "egress_avg_bytes_per_s": at["egress_avg_bytes_per_s"] if at else None,
        "egress_peak_bytes_per_s": peak,
        "offload_fraction": at["offload_fraction"] if at else None,
    }


def ratios(measured: dict[str, dict[str, Any]], prediction: dict[str, Any]) -> dict[str, Any]:
    """prfaas over each baseline: of the max sustainable throughputs (the acceptance ratio), and of
    the highest steady throughputs measured (saturated capacity, defined even where no point
    passed the criterion), each next to the planner's ratio of Λ_max."""
    lam = {k: v.get("max_sustainable_rps") for k, v in measured.items()}
    top = {k: v.get("max_measured_rps") for k, v in measured.items()}
    out: dict[str, Any] = {}
    for base in ("homogeneous-pd", "naive-hetero"):
        key = f"prfaas/{base}"
        ours, theirs = lam.get("prfaas"), lam.get(base)
        m = ours / theirs if ours and theirs else None
        ours_top, theirs_top = top.get("prfaas"), top.get(base)
        sat = ours_top / theirs_top if ours_top and theirs_top else None
        pred = prediction["ratios"][key]
        # Runs from before the work-conserving Λ (planner/work_conserving.py) have no such ratio.
        work = prediction.get("ratios_work", {}).get(key)
        out[key] = {"measured": m, "predicted": pred,
                    "measured_over_predicted": m / pred if m else None,
                    "saturated": sat,
                    "saturated_over_predicted": sat / pred if sat else None,
                    "predicted_work": work,
                    "measured_over_predicted_work": m / work if m and work else None}  # fmt: skip
    return out


def markdown(doc: dict[str, Any]) -> str:
    pred, meas = doc["prediction"]["policies"], doc["measured"]
    if not meas:  # --no-sweep: the fluctuation only
        return _fluctuation_lines(doc.get("fluctuation"))
    lines = [
        "| policy | N_prfaas | N_p/N_d | t | Λ predicted (work-conserving) | max sustainable (measured) | "
        "measured/predicted | highest steady (measured/predicted) | TTFT mean / P90 @ common | egress avg / peak (Mbit/s) | "
        "offload (measured / predicted) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for pol in POLICIES:
        if pol not in meas:
            continue
        p, m = pred[pol], meas[pol]
        lam = m["max_sustainable_rps"]
        c = m["at_common_load"] or {}
        t = p["threshold_tokens"]
        lines.append(
            f"| {pol} | {p['n_prfaas']} | {p['n_prefill']}/{p['n_decode']} | "
            f"{'–' if t is None else f'{t:.0f}'} | {p['lambda_max_rps']:.3f} "
            f"({_f(p.get('lambda_work_rps'))}) | {_f(lam)} "
            f"(offered {_f(m['max_sustainable_offered_rps'], '.2f')}) | "
            f"{_f(lam / p['lambda_max_rps'] if lam else None)} | "
            f"{_f(m['max_measured_rps'])} ({_f(m['max_measured_rps'] / p['lambda_max_rps'])}) | "
            f"{_f(c.get('ttft_mean_s'), '.2f')} / {_f(c.get('ttft_p90_s'), '.2f')} s | "
            f"{_mbit(m['egress_avg_bytes_per_s'])} / {_mbit(m['egress_peak_bytes_per_s'])} | "
            f"{_f(m['offload_fraction'], '.2f')} / {p['offload_fraction']:.2f} |"
        )
    lines += [
        "",
        "| ratio | predicted (work-conserving) | measured (sustainable) | measured/predicted "
        "(/work-conserving) | measured (highest steady throughput) | measured/predicted |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for key, r in doc.get("ratios", {}).items():
        lines.append(f"| {key} | {r['predicted']:.3f} ({_f(r.get('predicted_work'))}) | "
                     f"{_f(r['measured'])} | {_f(r['measured_over_predicted'])} "
                     f"({_f(r.get('measured_over_predicted_work'))}) | {_f(r.get('saturated'))} | "
                     f"{_f(r.get('saturated_over_predicted'))} |")  # fmt: skip
    lines += ["", "Rate points (offered → steady throughput, completion ratio, ITL p90, TPOT p90,"
              " failures, sustainable):", ""]  # fmt: skip
    for pol, pts in doc["points"].items():
        for x in pts:
            lines.append(
                f"- {pol} @ {x['offered_rps']:.2f}/s: {_f(x['throughput_rps'])}/s, "
                f"ratio {_f(x['completion_ratio'], '.2f')}, ITL p90 {_f(x['itl_p90_s'], '.2f')} s, "
                f"TPOT p90 {_f(x['tpot_p90_s'], '.2f')} s, failed {x['failed']}, "
                f"TTFT mean {_f(x['ttft_mean_s'], '.2f')} s → "
                f"{'sustainable' if x['sustainable'] else 'not sustainable'}"
            )
    lines += _fluctuation_lines(doc.get("fluctuation")).splitlines()
    return "\n".join(lines) + "\n"


def _fluctuation_lines(fl: dict[str, Any] | None) -> str:
    lines: list[str] = []
    if fl:
        ph = fl["phases"]
        lines += ["", f"Fluctuation: {_title(fl)}; first threshold rise "
                  f"{_f(fl.get('first_raise_after_cut_s'), '.1f')} s after the first step; TTFT "
                  f"recovered (sent from 30 s after the restore) / before: "
                  f"{_f(ph.get('recovery_ratio'), '.2f')}", ""]  # fmt: skip
        if "recovered" in ph:
            rec = ph["recovered"]
            lines.append(f"- recovered: TTFT mean {_f(rec['ttft_mean_s'], '.2f')} s over "
                         f"{rec['requests']} requests")  # fmt: skip
        for name, ph in fl["phase_stats"].items():
            lines.append(
                f"- {name}: TTFT mean {_f(ph['ttft_mean_s'], '.2f')} s over {ph['requests']} "
                f"requests; threshold mean {_f(ph['threshold_mean'], '.0f')} (max "
                f"{_f(ph['threshold_max'], '.0f')}); offloads {_f(ph['offload_per_s'], '.2f')}/s "
                f"(fraction {_f(ph.get('offload_fraction'), '.2f')}); egress "
                f"{_mbit(ph['egress_bytes_per_s'])} Mbit/s; signals: utilization max "
                f"{_f(ph.get('utilization_max'), '.2f')}, PrfaaS waiting/worker max "
                f"{_f(ph.get('prfaas_waiting_mean_max'), '.1f')}, retransmits "
                f"{_f(ph.get('retransmits'), '.0f')} (loss ≈ {_f(ph.get('loss_estimate'), '.4f')})"
            )
    return "\n".join(lines) + "\n"


def _title(fl: dict[str, Any]) -> str:
    """The run in one line: rate, link schedule, failures."""
    steps = fl.get("schedule") or [
        {"t_s": fl["cut_at_s"], "factor": fl["cut_gbps"] / fl["link_gbps"]},
        {"t_s": fl["cut_at_s"] + fl["cut_for_s"], "factor": 1.0},
    ]
    link = ", ".join(f"×{s['factor']:g} at {s['t_s']:.0f} s" for s in steps)
    return (f"prfaas at {fl['rate_rps']:.2f} req/s, link {fl['link_gbps']:g} Gbit/s configured, "
            f"{link}; failed requests: {fl['failed']}")  # fmt: skip


def phase_stats(fl: dict[str, Any]) -> dict[str, Any]:
    s = fl["samples"]
    a, b = fl["cut_at_s"], fl["cut_at_s"] + fl["cut_for_s"]
    out = {}
    for name, (lo, hi) in {"before": (0, a), "during": (a, b), "after": (b, 1e18)}.items():
        win = [x for x in s if lo <= x["t_s"] < hi]
        th = [x["threshold_tokens"] for x in win if x["threshold_tokens"] is not None]
        span = win[-1]["t_s"] - win[0]["t_s"] if len(win) >= 2 else 0.0
        rate = {
            k: (win[-1][k] - win[0][k]) / span if span > 0 else None
            for k in ("offloaded", "decisions", "egress_sent_bytes")
        }
        util = [x["utilization"] for x in win if x.get("utilization") is not None]
        waiting = [
            x["prfaas_waiting_mean"] for x in win if x.get("prfaas_waiting_mean") is not None
        ]
        retrans = (
            (win[-1].get("retransmits") or 0.0) - (win[0].get("retransmits") or 0.0) if win else 0.0
        )
        segments = (rate["egress_sent_bytes"] or 0.0) * span / 1448
        out[name] = {
            **fl["phases"][name],
            "threshold_mean": sum(th) / len(th) if th else None,
            "threshold_max": max(th) if th else None,
            "offload_per_s": rate["offloaded"],
            "egress_bytes_per_s": rate["egress_sent_bytes"],
            "offload_fraction": rate["offloaded"] / rate["decisions"]
            if rate["decisions"]
            else None,
            "utilization_max": max(util) if util else None,
            "prfaas_waiting_mean_max": max(waiting) if waiting else None,
            "retransmits": retrans,
            "loss_estimate": retrans / segments if segments else None,
        }
    return out


def plot_throughput(doc: dict[str, Any], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, (pol, pts) in enumerate(doc["points"].items()):
        color = f"C{i}"
        xs = [p["offered_rps"] for p in pts]
        ax.plot(xs, [p["throughput_rps"] or 0 for p in pts], "o-", color=color, label=pol)
        for p in pts:
            if not p["sustainable"]:
                ax.plot(p["offered_rps"], p["throughput_rps"] or 0, "x", color="k", ms=9)
        lam = doc["prediction"]["policies"][pol]["lambda_max_rps"]
        ax.axhline(lam, color=color, ls="--", lw=1)
    top = max(p["offered_rps"] for pts in doc["points"].values() for p in pts)
    ax.plot([0, top], [0, top], ":", color="grey", lw=1, label="offered")
    ax.set_xlabel("offered load (req/s)")
    ax.set_ylabel("steady completed throughput (req/s)")
    ax.set_title("Measured throughput vs offered (x: not sustainable); dashed: planner Λ_max")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _offload_fraction(s: list[dict[str, Any]], window_s: float = 10.0) -> tuple[list, list]:
    """Offloaded / routed decisions over the trailing `window_s` at each sample."""
    ts, frac = [], []
    j = 0
    for x in s:
        while s[j]["t_s"] < x["t_s"] - window_s:
            j += 1
        routed = x["decisions"] - s[j]["decisions"]
        ts.append(x["t_s"])
        frac.append((x["offloaded"] - s[j]["offloaded"]) / routed if routed > 0 else None)
    return ts, frac


def plot_fluctuation(fl: dict[str, Any], path: Path) -> Path:
    """Five panels over time: threshold t; offload fraction; egress, measured capacity and the
    shaped link rate; TTFT by send time; the controller's other signals."""
    s = fl["samples"]
    t = [x["t_s"] for x in s]
    fig, axes = plt.subplots(5, 1, figsize=(8, 12), sharex=True)
    axes[0].plot(t, [x["threshold_tokens"] for x in s], color="C0")
    axes[0].set_ylabel("threshold t (tokens)")
    ft, frac = _offload_fraction(s)
    axes[1].plot(ft, frac, color="C1")
    axes[1].set_ylabel("offload fraction\n(trailing 10 s)")
    axes[1].set_ylim(0, 1)
    egress: list[float | None] = []
    for a, b in zip(s, s[1:], strict=False):
        dt = max(b["t_s"] - a["t_s"], 1e-6)
        sent = b["egress_sent_bytes"] - a["egress_sent_bytes"]
        # A worker whose scrape failed drops out of a sample's sum: no rate across that gap.
        egress.append(sent * 8 / 1e6 / dt if sent >= 0 else None)
    axes[2].plot(t[1:], egress, color="C2", alpha=0.7, label="PrfaaS egress")
    cap = [x.get("capacity_bytes_per_s") for x in s]
    axes[2].plot(t, [None if c is None else c * 8 / 1e6 for c in cap], color="C7", ls="--",
                 label="measured capacity (router)")  # fmt: skip
    shaped_t, shaped = [0.0], [fl["link_gbps"] * 1000]
    for e in fl.get("events", []):
        shaped_t += [e["t_s"], e["t_s"]]
        shaped += [shaped[-1], e["gbps"] * 1000]
    shaped_t.append(t[-1] if t else 0.0)
    shaped.append(shaped[-1])
    axes[2].plot(shaped_t, shaped, color="k", lw=1, label="shaped link rate")
    axes[2].set_ylabel("Mbit/s")
    axes[2].legend(loc="upper right", fontsize=7)
    req = [r for r in fl["requests"] if r["ttft_s"] is not None]
    axes[3].plot([r["send_s"] for r in req], [r["ttft_s"] for r in req], ".", ms=4, color="C3")
    bad = [r["send_s"] for r in fl["requests"] if not r["ok"]]
    if bad:
        axes[3].plot(bad, [0] * len(bad), "x", color="k", ms=6, label="failed")
        axes[3].legend(loc="upper right", fontsize=7)
    axes[3].set_ylabel("TTFT (s) by send time")
    # The short-term controller's other signals.
    axes[4].plot(t, [x.get("utilization") for x in s], color="C4", label="utilization (router)")
    axes[4].axhline(0.9, color="C4", ls=":", lw=1)
    axes[4].set_ylabel("utilization of measured")
    q = axes[4].twinx()
    q.plot(t, [x.get("prfaas_waiting_mean") for x in s], color="C5", label="PrfaaS waiting/worker")
    loss = [0.0]
    for a, b in zip(s, s[1:], strict=False):
        seg = (b["egress_sent_bytes"] - a["egress_sent_bytes"]) / 1448
        re = (b.get("retransmits") or 0.0) - (a.get("retransmits") or 0.0)
        loss.append(100 * re / seg if seg > 0 else 0.0)
    q.plot(t, loss, color="C6", alpha=0.7, label="loss ≈ % retransmitted")
    q.set_ylabel("waiting / loss %")
    axes[4].legend(loc="upper left", fontsize=7)
    q.legend(loc="upper right", fontsize=7)
    axes[4].set_xlabel("time since start (s)")
    for ax in axes:
        ax.axvspan(fl["cut_at_s"], fl["cut_at_s"] + fl["cut_for_s"], color="grey", alpha=0.15)
    fig.suptitle(_title(fl), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write(doc: dict[str, Any], out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "experiment.json", "markdown": out / "experiment.md"}
    if doc.get("fluctuation"):
        doc["fluctuation"]["phase_stats"] = phase_stats(doc["fluctuation"])
        paths["fluctuation_png"] = plot_fluctuation(doc["fluctuation"], out / "fluctuation.png")
    if doc["points"]:
        paths["throughput_png"] = plot_throughput(doc, out / "throughput.png")
    paths["json"].write_text(json.dumps(doc, indent=1, default=str))
    paths["markdown"].write_text(markdown(doc))
    return paths
