"""Long-timescale control: rolling statistics -> planner -> new t and N_p/N_d -> role changes.

Each `step()` (e.g. every few minutes):
  1. takes the uncached lengths of requests that arrived within `window_s` (and their rate): the
     whole deployment's, from the workers' prefill histograms (`observe_cluster`,
     router/cluster_arrivals.py), when they account for at least the requests this router routed
     itself (`observe_request`), else this router's own (one replica sees only its share);
  2. calibrates the model with measured stage speed: `prefill_slowdown` scales a profile's
     T_prefill by measured / profiled time, summed over the same requests in the window
     (`observe_prefill`: each completed prefill's seconds against the profile's T_prefill at its
     uncached length), `decode_rps_per_instance` replaces Eq. 5's per-instance
     rate when given; and with the KV the workers really ship (`observe_kv_size`): S_kv(l) =
     state + l · bytes per token replaces the profiles' KV column (a profile's bytes are another
     deployment's: an emulated one ships them ÷1000, and Θ_prfaas's link term B_out / S_kv was
     then 1000× too small);
  3. evaluates the current split at its best t, and the best split overall (planner grid search);
  4. changes the split only if the planned Λ_max gains at least `min_gain` (hysteresis against
     flapping on noise), moving at most `max_moves` PD workers per step, each drained first;
  5. otherwise keeps the split and re-tunes t for it.
Decisions are data (`LongTermDecision`) with a reason; the router applies and logs them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from prfaas.planner.profiles import DecodeProfile, PrefillProfile
from prfaas.planner.search import ClusterModel, OperatingPoint, optimal_threshold, search
from prfaas.planner.workload import EmpiricalLengths
from prfaas.roles import Role
from prfaas.router.policy import WorkerSnapshot

WINDOW_PERIODS = 20
"""The router's statistics window in planner periods (20 x the default 30 s = 600 s)."""


@dataclass(frozen=True)
class LongTermConfig:
    window_s: float = 600.0
    """Rolling window of request statistics, seconds."""
    min_samples: int = 50
    """Fewer requests in the window than this: hold (too little data to re-plan)."""
    min_gain: float = 0.05
    """Relative Λ_max gain a new split must promise before any role changes."""
    max_moves: int = 1
    """Most PD workers re-roled per step (each one drains first)."""


@dataclass(frozen=True)
class RoleChange:
    """Drain `worker_id`, then restart it in `to_role`."""

    worker_id: str
    from_role: Role
    to_role: Role


@dataclass(frozen=True)
class LongTermDecision:
    threshold: float
    """New base t for the short-term controller (`set_base`)."""
    n_p: int
    n_d: int
    actions: list[RoleChange] = field(default_factory=list)
    reason: str = "hold"
    """hold:insufficient_data | retune_threshold | rebalance:prefill_bound | rebalance:decode_bound."""
    arrival_rps: float = 0.0
    arrivals: str = "router"
    """Whose arrivals were planned on: "cluster" (every worker's prefills) or "router" (its own)."""
    current: OperatingPoint | None = None
    planned: OperatingPoint | None = None


def _slowed(profile: PrefillProfile, factor: float) -> PrefillProfile:
    return replace(profile, prefill_seconds=profile.prefill_seconds * factor)


def _shipping(profile: PrefillProfile, kv: tuple[float, float] | None) -> PrefillProfile:
    """The profile with S_kv(l) = state + l · per_token, the deployment's shipped KV."""
    if kv is None:
        return profile
    per_token, state = kv
    return replace(profile, kv_bytes=state + profile.input_tokens * per_token)


class LongTermController:
    """Rolling statistics plus the planner; not thread-safe (router event loop only)."""

    def __init__(self, model: ClusterModel, config: LongTermConfig | None = None) -> None:
        self.model = model
        self.config = config or LongTermConfig()
        self._samples: deque[tuple[float, int]] = deque()
        # The deployment's prefills per long tick: (time, counts, token sums) per length bucket.
        self._cluster: deque[tuple[float, np.ndarray, np.ndarray]] = deque()
        # Per cluster key ("pd", "prfaas"): (time, measured seconds, profiled seconds) per prefill.
        self._prefills: dict[str, deque[tuple[float, float, float]]] = {
            "pd": deque(), "prfaas": deque()
        }  # fmt: skip
        self.prefill_slowdown: dict[str, float] = {"pd": 1.0, "prfaas": 1.0}
        self.decode_rps_per_instance: float | None = None
        self.kv_size: tuple[float, float] | None = None
        """(KV bytes per token, state bytes per request) shipped; None: the profiles' own."""

    def observe_request(self, now: float, uncached_tokens: int) -> None:
        """Called once per routed request with its incremental (uncached) length."""
        self._samples.append((now, uncached_tokens))

    def observe_cluster(self, now: float, counts: np.ndarray, tokens: np.ndarray) -> None:
        """The prefills every worker completed since the previous call, per length bucket: how
        many and their uncached tokens in all (`ClusterArrivals.sample`)."""
        if counts.any():
            self._cluster.append((now, counts, tokens))

    def arrivals(self, now: float) -> tuple[np.ndarray, str]:
        """The uncached lengths that arrived within the window and whose they are: the
        deployment's (each histogram bucket as its count of its mean length) when they are at
        least as many as this router's own, else this router's own samples."""
        self._prune(now)
        own = np.array([n for _, n in self._samples], dtype=float)
        if not self._cluster:
            return own, "router"
        counts = np.sum([c for _, c, _ in self._cluster], axis=0)
        tokens = np.sum([t for _, _, t in self._cluster], axis=0)
        if counts.sum() < own.size:
            return own, "router"
        filled = counts > 0
        return np.repeat(tokens[filled] / counts[filled], counts[filled]), "cluster"

    def arrival_share(self, now: float) -> float:
        """This router's share of the deployment's arrivals over the window: the requests it
        routed / the prefills every worker completed (`observe_cluster`); 1.0 while the workers
        report no more than its own (a sole router, or workers too old to report). The short
        law reads a replica's own recent arrivals as a rate, so it divides by this: with two
        replicas each sees about half, and without it each would judge the link and the local
        PD-P workers by half the load. Prefills are counted when they complete and requests
        when routed, so those in flight make the share read a little high (toward 1.0: the
        single-router behaviour)."""
        self._prune(now)
        own = len(self._samples)
        cluster = int(sum(int(c.sum()) for _, c, _ in self._cluster))
        return own / cluster if own and cluster > own else 1.0

    def _prune(self, now: float) -> None:
        cutoff = now - self.config.window_s
        while self._samples and self._samples[0][0] < cutoff:
            self._samples.popleft()
        while self._cluster and self._cluster[0][0] < cutoff:
            self._cluster.popleft()

    def observe_prefill(
        self, now: float, cluster: str, uncached_tokens: int, seconds: float
    ) -> None:
        """A completed prefill in `cluster` ("pd" or "prfaas") of `uncached_tokens` took `seconds`
        of compute on its worker (`PrefillResult.prefill_seconds`)."""
        profile = self.model.prfaas_profile if cluster == "prfaas" else self.model.pd_profile
        if profile is None or uncached_tokens <= 0 or seconds <= 0:
            return
        self._prefills[cluster].append((now, seconds, float(profile.t_prefill(uncached_tokens))))

    def measured_slowdown(self, now: float) -> dict[str, float]:
        """Measured / profiled prefill time per cluster over the window's prefills (the ratio of
        sums over the same requests; clusters without one are left out). Not tokens/s at some
        other length: a profile with a fixed per-request cost (H20: 0.93 s at 128 tokens, 1.0 s
        at 1024) makes tokens/s depend on the lengths measured, and a PD-P that had prefilled
        only two 33-token warm-up requests read 12-15x its profile (issue 12's phased run)."""
        out = {}
        for key, samples in self._prefills.items():
            while samples and samples[0][0] < now - self.config.window_s:
                samples.popleft()
            profiled = sum(p for _, _, p in samples)
            if profiled > 0:
                out[key] = sum(m for _, m, _ in samples) / profiled
        return out

    def observe_stage_speed(
        self,
        pd: float | None = None,
        prfaas: float | None = None,
        decode_rps_per_instance: float | None = None,
    ) -> None:
        """Measured/profiled prefill time ratios and measured decode req/s per instance."""
        if pd is not None:
            self.prefill_slowdown["pd"] = pd
        if prfaas is not None:
            self.prefill_slowdown["prfaas"] = prfaas
        if decode_rps_per_instance is not None:
            self.decode_rps_per_instance = decode_rps_per_instance

    def observe_kv_size(self, bytes_per_token: float, state_bytes: float = 0.0) -> None:
        """The KV bytes the deployment ships per prompt token and per request (`kv_footprint`)."""
        self.kv_size = (bytes_per_token, state_bytes)

    def _calibrated(self) -> ClusterModel:
        pd = _slowed(self.model.pd_profile, self.prefill_slowdown["pd"])
        m = replace(self.model, pd_profile=_shipping(pd, self.kv_size))
        if m.prfaas_profile is not None:
            prfaas = _slowed(m.prfaas_profile, self.prefill_slowdown["prfaas"])
            m = replace(m, prfaas_profile=_shipping(prfaas, self.kv_size))
        if self.decode_rps_per_instance is not None:
            # Eq. 5 per instance = BS_max / (T_decode · L_out); keep BS_max, solve for T_decode.
            step = m.decode.max_batch / (self.decode_rps_per_instance * m.output_tokens)
            m = replace(m, decode=DecodeProfile(m.decode.max_batch, step))
        return m

    def step(
        self, now: float, workers: Sequence[WorkerSnapshot], local_cluster: str = "local"
    ) -> LongTermDecision:
        """Re-plan from the window ending at `now`; `workers` gives the current PD roles."""
        cfg = self.config
        samples, source = self.arrivals(now)
        pd = [
            w
            for w in workers
            if w.cluster == local_cluster and w.healthy and w.role in (Role.PREFILL, Role.DECODE)
        ]
        prefill = sorted(
            (w for w in pd if w.role is Role.PREFILL),
            key=lambda w: (w.queue_depth, w.load, w.worker_id),
        )
        decode = sorted(
            (w for w in pd if w.role is Role.DECODE),
            key=lambda w: (w.load, w.queue_depth, w.worker_id),
        )
        n_p = len(prefill)
        rate = samples.size / cfg.window_s
        if samples.size < cfg.min_samples or not decode:
            return LongTermDecision(
                np.nan, n_p, len(decode), reason="hold:insufficient_data", arrival_rps=rate,
                arrivals=source,
            )  # fmt: skip
        lengths = EmpiricalLengths.from_samples(samples)
        model = replace(self._calibrated(), n_pd=len(pd))
        current = optimal_threshold(model, lengths, n_p)
        planned, _ = search(model, lengths)
        if planned.n_p == n_p or planned.lambda_max < current.lambda_max * (1 + cfg.min_gain):
            return LongTermDecision(
                current.threshold, n_p, len(decode), [], "retune_threshold", rate, source,
                current, current,
            )  # fmt: skip
        moves = min(abs(planned.n_p - n_p), cfg.max_moves)
        if planned.n_p > n_p:
            actions = [RoleChange(w.worker_id, Role.DECODE, Role.PREFILL) for w in decode[:moves]]
            reason = "rebalance:prefill_bound"
        else:
            actions = [RoleChange(w.worker_id, Role.PREFILL, Role.DECODE) for w in prefill[:moves]]
            reason = "rebalance:decode_bound"
        new_n_p = n_p + (moves if planned.n_p > n_p else -moves)
        target = optimal_threshold(model, lengths, new_n_p)
        return LongTermDecision(
            target.threshold, new_n_p, len(pd) - new_n_p, actions, reason, rate, source,
            current, target,
        )  # fmt: skip
