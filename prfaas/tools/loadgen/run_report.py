"""Human-readable outputs: the Markdown table, and one run's files under an output folder."""

from __future__ import annotations

from pathlib import Path

from prfaas.tools.loadgen import plots
from prfaas.tools.loadgen.results import Results, Summary


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x * 1000:.0f}"


def _num(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


COLUMNS = (
    "run",
    "ok/total",
    "req/s",
    "out tok/s",
    "TTFT mean ms",
    "TTFT p50",
    "TTFT p90",
    "TTFT p99",
    "TTFT p90 all sent",
    "ITL p50 ms",
    "ITL p99",
    "e2e p50 s",
    "e2e p90 s",
    "cached",
    "egress MB",
    "errors",
)


def table_row(name: str, s: Summary) -> list[str]:
    egress = "-" if s.egress_bytes is None else f"{s.egress_bytes / 1e6:.1f}"
    errors = ", ".join(f"{k}:{v}" for k, v in s.errors.items()) or "0"
    return [
        name,
        f"{s.succeeded}/{s.requests}",
        _num(s.throughput_rps, 3),
        _num(s.output_tokens_per_s, 1),
        _ms(s.ttft_mean_s),
        _ms(s.ttft_p50_s),
        _ms(s.ttft_p90_s),
        _ms(s.ttft_p99_s),
        # Served requests only in the columns before; here a failed send counts as infinitely late.
        _ms(s.ttft_p90_all_sent_s) if s.ttft_p90_all_sent_s is not None or not s.requests else "∞",
        _ms(s.itl_p50_s),
        _ms(s.itl_p99_s),
        _num(s.e2e_p50_s),
        _num(s.e2e_p90_s),
        f"{s.cached_fraction:.1%}",
        egress,
        errors,
    ]


def format_table(runs: dict[str, Summary]) -> str:
    """A Markdown table with one row per named run."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(table_row(name, s)) + " |" for name, s in runs.items()]
    return "\n".join(lines)


def write_results(results: Results, out_dir: str | Path, name: str = "run") -> dict[str, Path]:
    """`{name}.json`, `{name}.md`, `{name}_ttft_cdf.png` and `{name}_timeline.png` in `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md = out / f"{name}.md"
    md.write_text(format_table({name: results.summary}) + "\n")
    return {
        "json": results.save(out / f"{name}.json"),
        "markdown": md,
        "ttft_cdf": plots.ttft_cdf({name: results}, out / f"{name}_ttft_cdf.png"),
        "timeline": plots.timeline({name: results}, out / f"{name}_timeline.png"),
    }
