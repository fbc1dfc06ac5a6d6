"""Per-process resident memory and open file descriptors, sampled from /proc, and their slopes.

A sample is (t_s, rss_mb, fds) for one process incarnation (name and pid: a restarted process
starts a new series). The slope is a least-squares fit over the samples after warm-up, with its
standard error, so that "flat" can be judged against the noise: a series is flat when its fitted
growth over the window is within max(2 standard errors of that growth, a floor).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# Growth below these floors over the whole window counts as flat whatever the fit says
# (allocator and page-cache jitter; a connection or two opened by a health check).
RSS_FLOOR_MB = 8.0
FD_FLOOR = 4.0


def read_rss_mb(pid: int) -> float | None:
    """VmRSS of `pid` in MiB, None when the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def count_fds(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


@dataclass(frozen=True)
class Slope:
    per_min: float  # fitted change per minute
    stderr_per_min: float
    span_s: float  # time covered by the fitted samples
    samples: int
    first: float
    last: float

    def flat(self, floor: float) -> bool:
        growth = self.per_min * self.span_s / 60.0
        noise = 2.0 * self.stderr_per_min * self.span_s / 60.0
        return growth <= max(noise, floor)


def fit_slope(ts: list[float], ys: list[float]) -> Slope | None:
    """Least-squares line through (t, y); None with fewer than 3 samples or no time spread."""
    n = len(ts)
    if n < 3:
        return None
    mt, my = sum(ts) / n, sum(ys) / n
    sxx = sum((t - mt) ** 2 for t in ts)
    if sxx == 0:
        return None
    slope = sum((t - mt) * (y - my) for t, y in zip(ts, ys, strict=True)) / sxx
    residual = sum((y - my - slope * (t - mt)) ** 2 for t, y in zip(ts, ys, strict=True))
    stderr = math.sqrt(residual / (n - 2) / sxx)
    return Slope(slope * 60.0, stderr * 60.0, ts[-1] - ts[0], n, ys[0], ys[-1])


@dataclass
class Series:
    name: str
    pid: int
    t_s: list[float] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)
    fds: list[float] = field(default_factory=list)

    def report(self, warmup_s: float) -> dict[str, Any]:
        """Slopes over the samples `warmup_s` after this incarnation's first (a process restarted
        mid-run warms up again)."""
        start = self.t_s[0] if self.t_s else 0.0
        keep = [i for i, t in enumerate(self.t_s) if t >= start + warmup_s]
        ts = [self.t_s[i] for i in keep]
        rss = fit_slope(ts, [self.rss_mb[i] for i in keep])
        fds = fit_slope(ts, [self.fds[i] for i in keep])
        return {
            "name": self.name,
            "pid": self.pid,
            "samples": len(self.t_s),
            "rss_mb_first": self.rss_mb[0] if self.rss_mb else None,
            "rss_mb_last": self.rss_mb[-1] if self.rss_mb else None,
            "rss_mb_max": max(self.rss_mb, default=None),
            "fds_last": self.fds[-1] if self.fds else None,
            "rss_slope": None if rss is None else {**rss.__dict__, "flat": rss.flat(RSS_FLOOR_MB)},
            "fd_slope": None if fds is None else {**fds.__dict__, "flat": fds.flat(FD_FLOOR)},
        }


class ResourceSampler:
    """Samples every live process `processes()` names (name -> pid) every `interval_s`."""

    def __init__(self, processes: Callable[[], dict[str, int]], interval_s: float = 5.0) -> None:
        self.processes = processes
        self.interval_s = interval_s
        self.series: dict[tuple[str, int], Series] = {}

    def sample(self, t_s: float) -> None:
        for name, pid in self.processes().items():
            rss, fds = read_rss_mb(pid), count_fds(pid)
            if rss is None or fds is None:
                continue  # exited between listing and reading
            series = self.series.setdefault((name, pid), Series(name, pid))
            series.t_s.append(round(t_s, 3))
            series.rss_mb.append(round(rss, 2))
            series.fds.append(fds)

    async def run(self, t0: float, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.sample(time.perf_counter() - t0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval_s)
        self.sample(time.perf_counter() - t0)

    def report(self, warmup_s: float) -> list[dict[str, Any]]:
        return [s.report(warmup_s) for s in self.series.values()]
