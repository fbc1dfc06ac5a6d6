"""Lay a `TopSnapshot` out as one rich screen (no I/O, no arithmetic beyond formatting)."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from prfaas.tools.top.snapshot import TopSnapshot, WorkerView


def _bytes_per_s(value: float | None) -> str:
    if value is None:
        return "-"
    for unit, scale in (("GB/s", 1e9), ("MB/s", 1e6), ("kB/s", 1e3)):
        if value >= scale:
            return f"{value / scale:.2f} {unit}"
    return f"{value:.0f} B/s"


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1e3:.0f} ms" if value < 10 else f"{value:.1f} s"


def _num(value: float | None, fmt: str = "{:.0f}") -> str:
    return "-" if value is None else fmt.format(value)


def render(snap: TopSnapshot, title: str = "prfaas top") -> RenderableType:
    """The whole screen: header, notes, control/link, latency, errors, one row per worker."""
    parts: list[RenderableType] = [_header(snap, title)]
    for note in snap.notes:
        parts.append(Text(f"! {note}", style="bold red"))
    parts += [_control(snap), _latency(snap), _workers(snap.workers)]
    return Group(*parts)


def _header(snap: TopSnapshot, title: str) -> Text:
    state = "up" if snap.router_up else "UNREACHABLE"
    return Text(f"{title} - router {snap.router_url} ({state})", style="bold")


def _control(snap: TopSnapshot) -> Table:
    t = snap.threshold
    table = Table(title="Routing and link", show_header=False, title_justify="left")
    table.add_column("what")
    table.add_column("value")
    why = t.reason or "not moved since start"
    if t.reason_age_s is not None:
        why += f" ({t.reason_age_s:.0f} s ago)"
    table.add_row("threshold t", f"{_num(t.tokens)} tokens (plan base {_num(t.base_tokens)})")
    table.add_row("t last moved by", why)
    regime = "-" if t.bandwidth_scarce is None else ("scarce" if t.bandwidth_scarce else "abundant")
    link = snap.link
    util = _num(None if link.utilization is None else 100 * link.utilization, "{:.1f}%")
    table.add_row(
        "link egress / capacity",
        f"{_bytes_per_s(link.egress_bytes_per_s)} / {_bytes_per_s(link.capacity_bytes_per_s)}"
        f" ({util}, bandwidth {regime})",
    )
    offload = _num(
        None if snap.offload_fraction is None else 100 * snap.offload_fraction, "{:.0f}%"
    )
    decided = ", ".join(f"{k} {v:.0f}" for k, v in sorted(snap.decisions.items())) or "none"
    table.add_row("offloaded", f"{offload} of routed ({decided}; {snap.latency.window})")
    table.add_row("finished", _num(snap.requests_per_s, "{:.2f} req/s"))
    errors = ", ".join(f"{k}: {v:.0f}" for k, v in sorted(snap.errors.items())) or "none"
    table.add_row("errors", errors)
    return table


def _latency(snap: TopSnapshot) -> Table:
    lat = snap.latency
    table = Table(title=f"Latency ({lat.window})", title_justify="left")
    table.add_column("")
    for q in sorted(set(lat.ttft_s) | set(lat.itl_s)):
        table.add_column(f"P{q * 100:g}", justify="right")
    for name, values in (("TTFT", lat.ttft_s), ("ITL", lat.itl_s)):
        table.add_row(name, *(_seconds(values[q]) for q in sorted(values)))
    return table


def _workers(workers: list[WorkerView]) -> Table:
    table = Table(title="Workers (router's view; own metrics where given)", title_justify="left")
    for column in ("worker", "cluster/role", "state", "queue", "decode seats", "KV egress",
                   "heartbeat", "run/wait", "KV used", "own metrics"):  # fmt: skip
        table.add_column(column)
    for w in workers:
        seats = "-" if w.seats_total is None else f"{_num(w.seats_used)}/{_num(w.seats_total)}"
        run_wait = "-" if w.running is None else f"{_num(w.running)}/{_num(w.waiting)}"
        kv = _num(None if w.kv_usage is None else 100 * w.kv_usage, "{:.0f}%")
        age = w.heartbeat_age_s
        beat = "never" if age is not None and age < 0 else _num(age, "{:.1f} s ago")
        style = "" if w.healthy else "red"
        table.add_row(
            w.worker, f"{w.cluster}/{w.role}", w.state, _num(w.queue_depth), seats,
            _bytes_per_s(w.kv_egress_bytes_per_s), beat, run_wait, kv,
            w.metrics.split(" (")[0], style=style,
        )  # fmt: skip
    return table
