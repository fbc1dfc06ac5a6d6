"""The short-term law replayed on the telemetry of issue 12's link-change runs made with it
(tests/router/data/link_*.log: the `link telemetry` lines of each run's router.log, one per tick
while the link carries, queues or has committed anything, or t is off its base; a header names
the run, its configured rate, base t and the link steps on the router's clock).

For every run: the law, fed the recorded inputs, reproduces every recorded threshold and reason (the
unlogged ticks between carried nothing and are replayed as such); the capacity estimator, fed the
recorded raw samples, calls the same ticks saturated and measures the same capacity in them. Each run's own claims are then
checked on the replay: t first rises within 5 s of a cut (unless the local PD-P queues already
wait past the level that holds t), falls back to its base within 30 s of the restore, and falls
below its base on a link faster than configured."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from prfaas.router.control import (
    CapacitySample,
    LinkCapacityEstimator,
    LinkTelemetry,
    ShortTermConfig,
    ShortTermController,
)

DATA = sorted((Path(__file__).parent / "data").glob("link_*.log"))
LINE = re.compile(
    r"(\d\d):(\d\d):(\d\d),(\d\d\d) .*link telemetry: egress=(\S+) backlog=(\S+) delivery=(\S+)"
    r" depth=(\S+) loss=(\S+) committed=(\S+) offered=(\S+) local_wait=(\S+) -> capacity=(\S+)"
    r" saturated=(\d) u=(\S+) t=(\S+) (\S+)(?: sending=(\S+))?"
)


@dataclass
class Run:
    name: str
    configured: float = 0.0
    base: float = 0.0
    steps: list[tuple[float, float]] = field(default_factory=list)
    """(router clock seconds of day, factor of the configured rate)."""
    ticks: list[dict] = field(default_factory=list)


def load(path: Path) -> Run:
    run = Run(path.stem)
    for line in path.read_text().splitlines():
        if line.startswith("# configured_bytes_per_s="):
            run.configured = float(line.split("=")[1])
        elif line.startswith("# base_threshold="):
            run.base = float(line.split("=")[1])
        elif line.startswith("# step "):
            at, factor = line.split()[2:4]
            run.steps.append((float(at), float(factor)))
        elif m := LINE.search(line):
            h, mi, s, ms = (int(x) for x in m.groups()[:4])
            v = [float(x) for x in m.groups()[4:16]]
            run.ticks.append({
                "t_s": h * 3600 + mi * 60 + s + ms / 1000, "egress": v[0], "backlog": v[1],
                "delivery": v[2], "depth": v[3], "loss": v[4], "committed": v[5],
                "offered": v[6], "local_wait": v[7], "capacity": v[8], "saturated": v[9] == 1,
                "u": v[10], "threshold": v[11], "reason": m.group(17), "recorded": True,
                "sending": float(m.group(18) or 0.0),  # not in logs before issue 18's fix
            })  # fmt: skip
    return run


def with_gaps(run: Run) -> list[dict]:
    """Recorded ticks, and between them the unlogged ones (nothing carried, queued or committed)."""
    out: list[dict] = []
    for prev, row in zip([None, *run.ticks], run.ticks, strict=False):
        gap = 0 if prev is None else round(row["t_s"] - prev["t_s"]) - 1
        if gap > 0 and (prev["committed"] or prev["backlog"]):
            gap = idle_ticks_between(prev, row, gap)
        for k in range(1, gap + 1):
            out.append({**prev, "t_s": prev["t_s"] + k, "egress": 0.0, "backlog": 0.0,
                        "delivery": 0.0, "committed": 0.0, "offered": 0.0, "depth": 0.0,
                        "loss": 0.0, "local_wait": 0.0, "recorded": False})  # fmt: skip
        out.append(row)
    return out


def idle_ticks_between(prev: dict, row: dict, most: int) -> int:
    """Unlogged ticks after a tick with KV committed or queued: none when the loaded machine ran
    the next tick late, some when what was committed completed within the tick (the router logs
    only busy ticks). Each idle tick halves the utilisation EWMA (weight 0.5 on a zero sample), so
    the count is the one that takes the recorded u of `prev` to that of `row`."""
    alpha = ShortTermConfig().ewma_alpha
    new = alpha * row["egress"] / max(row["capacity"], 1e-9)
    return min(range(most + 1),
               key=lambda k: abs(new + (1 - alpha) ** (k + 1) * prev["u"] - row["u"]))  # fmt: skip


@pytest.fixture(params=DATA, ids=[p.stem for p in DATA])
def run(request: pytest.FixtureRequest) -> Run:
    return load(request.param)


def replay(run: Run) -> list[tuple[dict, float, str]]:
    """(tick, threshold, reason) from the current law fed the recorded inputs (the capacity and
    its saturated verdict as recorded: the estimator is checked on its own below)."""
    ctl = ShortTermController(run.base, ShortTermConfig())
    out = []
    for tick in with_gaps(run):
        tel = LinkTelemetry(
            tick["egress"], tick["capacity"], tick["depth"], tick["loss"], tick["backlog"],
            committed_bytes=tick["committed"], offered_bytes_per_s=tick["offered"],
            link_saturated=tick["saturated"], local_wait_s=tick["local_wait"],
            configured_bytes_per_s=run.configured,
        )  # fmt: skip
        d = ctl.update(tel)
        out.append((tick, d.threshold, d.reason))
    return out


def test_law_reproduces_every_recorded_threshold_and_reason(run: Run) -> None:
    assert run.configured > 0 and run.base > 0 and len(run.ticks) > 60
    for tick, threshold, reason in replay(run):
        if tick["recorded"]:
            assert threshold == pytest.approx(tick["threshold"], abs=1), tick
            assert reason == tick["reason"], tick


def test_estimator_reproduces_every_recorded_saturated_capacity(run: Run) -> None:
    """Fed the recorded raw samples, the estimator calls the same ticks saturated and measures the
    same capacity there (after an unlogged stretch the router's tick count is known only to a
    tick, and the relaxation toward the configured rate depends on it, so the comparison starts
    again at each saturated stretch). One known difference: the runs recorded before the
    hand-over rule (link_capacity.py) called saturated a backlogged tick that carried nothing
    after one that was neither saturated nor stalled; the estimator now measures nothing there."""
    est = LinkCapacityEstimator(run.configured)
    checked, prev = 0, None
    for tick in with_gaps(run):
        stalled = tick["egress"] == 0 and tick["backlog"] >= (1 << 20)
        handed_over = stalled and not (prev and (prev["saturated"] or prev["stalled"]))
        tick = {**tick, "stalled": stalled}
        if tick["recorded"] and tick["saturated"] and handed_over:
            before = est.estimate
            est.update(CapacitySample(tick["egress"], tick["backlog"], tick["delivery"]))
            assert not est.saturated and est.estimate == pytest.approx(before), tick
            prev = {**tick, "saturated": False}
            continue
        if tick["recorded"] and tick["saturated"] and not (prev and prev["saturated"]):
            est.estimate, est.saturated = tick["capacity"], False  # resynchronise
        capacity = est.update(CapacitySample(tick["egress"], tick["backlog"], tick["delivery"],
                                             tick.get("sending", 0.0)))  # fmt: skip
        if tick["recorded"]:
            assert est.saturated == tick["saturated"], tick
            if tick["saturated"] and prev and prev["recorded"] and prev["saturated"]:
                assert capacity == pytest.approx(tick["capacity"], rel=1e-3), tick
                checked += 1
        prev = tick
    assert checked > 0 or sum(t["saturated"] for t in run.ticks) < 2


def test_threshold_rises_within_five_seconds_of_a_cut_and_returns_after_the_restore(
    run: Run,
) -> None:
    steps = replay(run)
    hold_s = ShortTermConfig().local_hold_fraction * ShortTermConfig().local_wait_budget_s
    previous = 1.0
    for at, factor in run.steps:
        after = [(tick["t_s"] - at, t) for tick, t, _ in steps if tick["t_s"] >= at]
        if factor < 1:
            first = next((dt for dt, t in after if t > run.base), None)
            if first is None or first > 5.0:  # only where the local queues held t (by design)
                held = [tick["local_wait"] >= hold_s for tick, _, _ in steps
                        if at <= tick["t_s"] <= at + 5.0 and tick["recorded"]]  # fmt: skip
                assert held and all(held), (run.name, at, first)
        elif factor == 1 and previous < 1:
            back = next((dt for dt, t in after if t <= run.base), None)
            assert back is not None and back <= 30.0, (run.name, at, back)
        elif factor > 1:  # a faster link: t falls below its base
            assert min(t for _, t in after) < run.base, (run.name, at)
        previous = factor
