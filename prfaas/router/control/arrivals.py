"""The requests the router routed lately, as the short-term law reads them.

`RecentArrivals` is owned by the dispatcher (it records each routed request's uncached length)
and read by the short loop once per tick; `ArrivalWindow` is the tick's read-out, handed to the
law inside `LinkTelemetry`. Arrays, not tuples: at datacenter scale (`prfaas sim`, ~300 req/s) a
30 s window holds ~9,000 requests, and the law sorts and sums them every tick."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from prfaas.router.control.long_term import LongTermController


@dataclass(frozen=True)
class ArrivalWindow:
    """The requests routed lately, oldest first, as a rate: they are the deployment's arrivals
    of `window_s` seconds (a sole router's window; a replica's window x its share of the
    arrivals, since it sees only that share).

    tokens:    [n] float64, each request's uncached tokens.
    prefill_s: [n] float64, its prefill seconds on one local PD-P worker."""

    tokens: np.ndarray = field(default_factory=lambda: np.zeros(0))
    prefill_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    window_s: float = 0.0

    def __post_init__(self) -> None:
        if self.tokens.shape != self.prefill_s.shape or self.tokens.ndim != 1:
            raise ValueError("tokens and prefill_s must be [n] arrays of one length")

    def __len__(self) -> int:
        return int(self.tokens.shape[0])

    @cached_property
    def by_length(self) -> tuple[np.ndarray, np.ndarray]:
        """(tokens, prefill_s), each [n], shortest first (ties: the cheaper first): the order
        every rule of the short law reads, sorted once per tick."""
        order = np.lexsort((self.prefill_s, self.tokens))
        return self.tokens[order], self.prefill_s[order]

    @classmethod
    def of(cls, pairs: Iterable[tuple[float, float]], window_s: float) -> ArrivalWindow:
        """From (uncached tokens, local prefill seconds) pairs."""
        array = np.asarray(list(pairs), dtype=float).reshape(-1, 2)
        return cls(array[:, 0].copy(), array[:, 1].copy(), window_s)


class RecentArrivals:
    """The uncached lengths of the requests routed in the last `window_s` seconds: the dispatcher
    records each (`observe`, in routing order), the short loop reads them (`tokens`)."""

    def __init__(self, window_s: float = 30.0) -> None:
        self.window_s = window_s
        self._times: list[float] = []
        self._tokens: list[int] = []
        self._head = 0  # entries before it left the window; compacted once they are half

    def observe(self, now: float, uncached_tokens: int) -> None:
        self._times.append(now)
        self._tokens.append(uncached_tokens)

    def tokens(self, now: float) -> np.ndarray:
        """[n] float64: the lengths routed in (now - window_s, now], oldest first."""
        times, head, edge = self._times, self._head, now - self.window_s
        while head < len(times) and times[head] <= edge:
            head += 1
        if head > len(times) // 2:
            del self._times[:head], self._tokens[:head]
            head = 0
        self._head = head
        return np.asarray(self._tokens[head:], dtype=float)


def local_prefill_seconds(
    tokens: np.ndarray,
    long: LongTermController | None,
    speeds: list[float],
    default_tokens_per_s: float,
) -> np.ndarray:
    """[n] seconds each of `tokens` ([n] uncached tokens) takes on one local PD-P worker: the
    planner's PD profile times its measured slowdown when there is a planner (`long`; a prompt's
    cost grows faster than its length), else the local workers' mean measured speed (`speeds`,
    tokens/s; `default_tokens_per_s` when none). One rule for the router's control loops and the
    simulator's."""
    if long is not None:
        if not len(tokens):
            return tokens
        profile = np.atleast_1d(np.asarray(long.model.pd_profile.t_prefill(tokens), dtype=float))
        return profile * long.prefill_slowdown["pd"]
    speed = sum(speeds) / len(speeds) if speeds else default_tokens_per_s
    return tokens / speed
