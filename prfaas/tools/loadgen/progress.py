"""A progress bar on stderr (no dependencies): redrawn in place on a terminal, one line per
10% of requests otherwise; silent when disabled."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(
        self, total: int, label: str = "", *, enabled: bool = True, stream: TextIO | None = None
    ) -> None:
        self.total = total
        self.label = label
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.sent = self.done = self.failed = 0
        self._start = time.perf_counter()
        self._last_draw = 0.0

    def update(self, *, sent: int = 0, done: int = 0, failed: int = 0) -> None:
        self.sent += sent
        self.done += done
        self.failed += failed
        now = time.perf_counter()
        if not self.enabled:
            return
        if self.stream.isatty():
            if now - self._last_draw > 0.2 or self.done == self.total:
                self._last_draw = now
                self.draw(now)
        elif (
            done
            and self.total
            and (self.done * 10 // self.total) > ((self.done - done) * 10 // self.total)
        ):
            self.stream.write(self.line(now) + "\n")  # not a terminal: one line per 10%
            self.stream.flush()

    def line(self, now: float | None = None) -> str:
        width = 30
        filled = width * self.done // self.total if self.total else width
        elapsed = (now or time.perf_counter()) - self._start
        bar = "#" * filled + "." * (width - filled)
        return (
            f"{self.label}[{bar}] {self.done}/{self.total} done, {self.sent - self.done} in flight, "
            f"{self.failed} failed, {elapsed:.0f}s"
        )

    def draw(self, now: float | None = None) -> None:
        self.stream.write("\r" + self.line(now))
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.stream.isatty():
            self.draw()
            self.stream.write("\n")
            self.stream.flush()
