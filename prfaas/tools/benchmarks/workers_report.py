"""Statistics and the readable table of `prfaas bench workers`."""

from __future__ import annotations

import math
from typing import Any


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 100]); nan for an empty list."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def ratio(num: float, den: float) -> float:
    return num / den if den > 0 else math.inf


def gaps_in(times: list[float], start: float, end: float) -> list[float]:
    """Inter-token gaps of one stream whose later token arrived in (start, end]."""
    return [b - a for a, b in zip(times, times[1:], strict=False) if start < b <= end]


def _row(name: str, value: Any, note: str = "") -> str:
    if isinstance(value, float):
        value = f"{value:.4g}"
    return f"  {name:<38} {value!s:>14}  {note}"


def render(res: dict[str, Any]) -> str:
    i, r = res["interference"], res["remote"]
    lines = [
        f"prfaas bench workers: preset {res['preset']}, {res['prompt_tokens']} prompt tokens, "
        f"max_batched_tokens {res['max_batched_tokens']}, link {res['link']}",
        f"load average {res['loadavg_start']} -> {res['loadavg_end']}",
        f"decode interference on a mixed worker ({i['streams']} streams):",
        _row(
            "ITL p50 without / with prefill (ms)",
            f"{i['itl_p50_ms_base']:.1f} / {i['itl_p50_ms_prefill']:.1f}",
            f"x{i['itl_p50_ratio']:.3g}",
        ),
        _row(
            "ITL p99 without / with prefill (ms)",
            f"{i['itl_p99_ms_base']:.1f} / {i['itl_p99_ms_prefill']:.1f}",
            f"x{i['itl_p99_ratio']:.3g}",
        ),
        _row(
            "longest gap during prefill (ms)",
            i["itl_max_ms_prefill"],
            f"{i['tokens_during_prefill']} tokens during prefill",
        ),
        _row(
            "prefill alone / with decodes (s)",
            f"{i['prefill_alone_s']:.2f} / {i['prefill_with_decodes_s']:.2f}",
            f"x{i['prefill_slowdown']:.3g}",
        ),
        "remote prefill (prefill worker -> TCP -> decode worker):",
        _row("prefill compute (s)", r["prefill_s"]),
        _row("transfer, first layer to ack (s)", r["transfer_s"]),
        _row("exposed after compute (s)", r["exposed_s"]),
        _row("bytes sent", r["bytes_sent"]),
        _row("goodput (MB/s)", r["goodput_mb_s"], r["goodput_source"]),
        _row("re-send of the cached prompt (MB/s)", r["resend_goodput_mb_s"], "lower bound"),
        _row("one full-attention layer (bytes)", r["layer_bytes"]),
        _row("one layer at goodput (s)", r["one_layer_s"]),
        _row(
            "exposed / one layer",
            r["exposed_over_one_layer"],
            "goal <= 1: " + ("met" if r["goal_met"] else "NOT met"),
        ),
        _row(
            "TTFT remote / local (s)",
            f"{r['ttft_remote_s']:.2f} / {r['ttft_local_s']:.2f}",
            f"x{r['ttft_ratio']:.3g}",
        ),
    ]
    return "\n".join(lines)
