"""Per-request placement (paper §2.3, §3.4.3): a pure function of snapshots, no I/O.

`route()` takes the request's length, the prefix match from the global index, worker snapshots,
the link regime and the effective threshold t, and returns a `RouteDecision` with a `Reason`.

Policies:
  prfaas          length routing on the *incremental* (uncached) length l:
                  scarce bandwidth  l = total - l_pd;  l <= t -> PD-P (local cache),
                                    else PrfaaS (its own cache, l = total - l_prfaas);
                  abundant          l = total - max(l_pd, l_prfaas); l <= t -> PD-P else PrfaaS;
                                    if the longer cache sits in the other cluster it is moved
                                    (`cross_cluster_transfer`).
                  An offload falls back to local when the PrfaaS cluster or link is down
                  (prfaas_unavailable) or every PrfaaS worker's queue is full (prfaas_queue_full);
                  a local request goes to PrfaaS when no local prefill-capable worker is up
                  (local_prefill_unavailable), rather than being refused.
  homogeneous-pd  no PrfaaS: everything on local PD-P/PD-D or a `mixed` worker (policy_local).
  naive-hetero    every prefill on PrfaaS, every decode local, no length routing (policy_offload).

Node choice inside a cluster is cache-affine among the lightly loaded: of the eligible workers
whose predicted prefill wait is within `affinity_wait_slack_s` of the soonest and whose queue
depth is within `affinity_queue_slack` of the shortest of those, take the longest usable prefix,
then the shortest predicted wait, the shortest queue, the lowest load, the lowest id. A local `mixed` prefill worker
also decodes; otherwise the decode node is the least-loaded decode/mixed worker with room for
prompt + max_new_tokens of KV (ties: most free KV).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from prfaas.roles import Role
from prfaas.router.prefix_index import PrefixMatch


class Target(StrEnum):
    LOCAL = "local"
    PRFAAS = "prfaas"


class Reason(StrEnum):
    SHORT = "short"
    PREFIX_HIT = "prefix_hit"
    """Local because a cached prefix brought the incremental length under t."""
    OFFLOADED = "offloaded"
    BANDWIDTH_LIMITED = "bandwidth_limited"
    """Local although l > base t: the short-term controller raised t (link pressure)."""
    PRFAAS_QUEUE_FULL = "prfaas_queue_full"
    PRFAAS_UNAVAILABLE = "prfaas_unavailable"
    LOCAL_PREFILL_UNAVAILABLE = "local_prefill_unavailable"
    """Offloaded although short: no local prefill-capable worker is up, PrfaaS can serve it."""
    LOCAL_QUEUE_FULL = "local_queue_full"
    """Offloaded although short: the local prefill queue would wait past its budget, and a
    prefill queued behind the (possibly slow) link on PrfaaS is served where a refusal is not."""
    POLICY_LOCAL = "policy_local"
    POLICY_OFFLOAD = "policy_offload"
    NO_CAPACITY = "no_capacity"
    """No eligible prefill or decode worker: the caller rejects or queues the request."""


@dataclass(frozen=True)
class WorkerSnapshot:
    """What the registry knows about one worker at decision time."""

    worker_id: str
    cluster: str
    role: Role
    healthy: bool = True
    draining: bool = False
    queue_depth: int = 0
    """Requests waiting for or in prefill on this worker."""
    load: float = 0.0
    """Utilisation in [0, 1] (decode: running batch / BS_max), for ranking."""
    seats_taken: float | None = None
    """Decode: running batch / BS_max when `load` also counts requests still to arrive (ranking
    spreads them; only taken seats fill a worker). None: `load` is the seat count."""
    free_kv_tokens: int = 0
    """Tokens of KV the worker can still allocate (decode side)."""
    predicted_wait_s: float = 0.0
    """Prefill side: seconds a prefill placed now would wait in this worker's queue (the
    router's prediction, prefill_estimate.py); counts tokens, where queue_depth counts requests."""

    @property
    def eligible(self) -> bool:
        return self.healthy and not self.draining


@dataclass(frozen=True)
class LinkState:
    """The short-term controller's view of the cross-cluster link."""

    up: bool = True
    bandwidth_scarce: bool = True


@dataclass(frozen=True)
class RoutingConfig:
    """Static routing configuration."""

    policy: str = "prfaas"
    """One of "prfaas", "homogeneous-pd", "naive-hetero"."""
    local_cluster: str = "local"
    prfaas_cluster: str = "prfaas"
    prfaas_max_queue_depth: int = 8
    """A PrfaaS worker with this many queued requests takes no more offloads."""
    affinity_queue_slack: int = 2
    """How much longer a queue may be and still win on cache affinity."""
    affinity_wait_slack_s: float = 2.0
    """How much longer a predicted prefill wait may be and still win on cache affinity."""


@dataclass(frozen=True)
class RouteRequest:
    num_prompt_tokens: int
    max_new_tokens: int = 0


@dataclass(frozen=True)
class RouteDecision:
    """Where one request runs, and why."""

    target: Target | None
    """None only with reason NO_CAPACITY."""
    reason: Reason
    prefill_worker: str | None
    decode_worker: str | None
    cached_tokens: int
    """Prefix tokens reused by the prefill (after any cross-cluster transfer)."""
    incremental_tokens: int
    cross_cluster_transfer: bool = False
    cache_source_worker: str | None = None
    """Worker whose cache supplies `cached_tokens` (another cluster's when transferring)."""
    threshold: float = 0.0
    """The effective t this decision used."""


def _pick(
    cands: list[WorkerSnapshot], match: PrefixMatch, slack: int, wait_slack_s: float
) -> WorkerSnapshot | None:
    """Balance by predicted wait first: with prompts from 128 to 131K tokens, equal request
    counts can hide queues of very different length (uneven PD-P queues turned into 429s from the
    wait budget, issue 12); request counts (which include other routers' work) come second."""
    if not cands:
        return None
    soonest = min(w.predicted_wait_s for w in cands)
    near = [w for w in cands if w.predicted_wait_s <= soonest + wait_slack_s]
    shortest = min(w.queue_depth for w in near)
    near = [w for w in near if w.queue_depth <= shortest + slack]
    return min(near, key=lambda w: (-match.worker_tokens(w.worker_id), w.predicted_wait_s,
                                    w.queue_depth, w.load, w.worker_id))  # fmt: skip


def _pick_decode(
    workers: Sequence[WorkerSnapshot], cluster: str, need: int
) -> WorkerSnapshot | None:
    cands = [
        w
        for w in workers
        if w.eligible and w.cluster == cluster and w.role in (Role.DECODE, Role.MIXED)
        and w.free_kv_tokens >= need
        # Seats = running batch / BS_max: a full decode worker takes no one (the request is
        # refused with 429 rather than left waiting for a seat past the admission deadline).
        and (w.load if w.seats_taken is None else w.seats_taken) < 1.0
    ]  # fmt: skip
    return min(
        cands, key=lambda w: (w.load, w.queue_depth, -w.free_kv_tokens, w.worker_id), default=None
    )


def _prefill_cands(
    workers: Sequence[WorkerSnapshot], cluster: str, roles: tuple[Role, ...]
) -> list[WorkerSnapshot]:
    return [w for w in workers if w.eligible and w.cluster == cluster and w.role in roles]


def _place(
    req: RouteRequest,
    workers: Sequence[WorkerSnapshot],
    match: PrefixMatch,
    cfg: RoutingConfig,
    target: Target,
    reason: Reason,
    threshold: float,
    use_cluster_cache: str,
) -> RouteDecision:
    """Choose the nodes for a decided target; the cache comes from `use_cluster_cache`."""
    total = req.num_prompt_tokens
    cluster = cfg.prfaas_cluster if target is Target.PRFAAS else cfg.local_cluster
    roles = (Role.PRFAAS, Role.PREFILL) if target is Target.PRFAAS else (Role.PREFILL, Role.MIXED)
    cross = use_cluster_cache != cluster and match.cluster_tokens(
        use_cluster_cache
    ) > match.cluster_tokens(cluster)
    affinity = match if not cross else PrefixMatch()
    prefill = _pick(_prefill_cands(workers, cluster, roles), affinity, cfg.affinity_queue_slack,
                    cfg.affinity_wait_slack_s)  # fmt: skip
    if prefill is None:
        return RouteDecision(None, Reason.NO_CAPACITY, None, None, 0, total, threshold=threshold)
    if cross:
        cached, source = (
            match.cluster_tokens(use_cluster_cache),
            match.best_worker[use_cluster_cache],
        )
    else:
        cached, source = match.worker_tokens(prefill.worker_id), prefill.worker_id
    cached = min(cached, max(total - 1, 0))
    need = total + req.max_new_tokens
    if target is Target.LOCAL and prefill.role is Role.MIXED:
        decode: WorkerSnapshot | None = prefill
    else:
        decode = _pick_decode(workers, cfg.local_cluster, need)
    if decode is None:
        return RouteDecision(
            None,
            Reason.NO_CAPACITY,
            prefill.worker_id,
            None,
            cached,
            total - cached,
            threshold=threshold,
        )
    return RouteDecision(
        target, reason, prefill.worker_id, decode.worker_id, cached, total - cached,
        cross_cluster_transfer=cross, cache_source_worker=source if cached else None, threshold=threshold,
    )  # fmt: skip


def _prfaas_blocked(
    workers: Sequence[WorkerSnapshot], link: LinkState, cfg: RoutingConfig
) -> Reason | None:
    """Why an offload cannot go to PrfaaS now, or None when it can."""
    cands = _prefill_cands(workers, cfg.prfaas_cluster, (Role.PRFAAS, Role.PREFILL))
    if not link.up or not cands:
        return Reason.PRFAAS_UNAVAILABLE
    if all(w.queue_depth >= cfg.prfaas_max_queue_depth for w in cands):
        return Reason.PRFAAS_QUEUE_FULL
    return None


def route(
    req: RouteRequest,
    workers: Sequence[WorkerSnapshot],
    match: PrefixMatch,
    link: LinkState,
    threshold: float,
    cfg: RoutingConfig,
    base_threshold: float | None = None,
) -> RouteDecision:
    """Place one request. `threshold` is the effective t (short-term controller); `base_threshold`
    is the planner's t, used only to tell `bandwidth_limited` from `short` (defaults to t)."""
    local, remote = cfg.local_cluster, cfg.prfaas_cluster
    base = threshold if base_threshold is None else base_threshold
    if cfg.policy == "homogeneous-pd":
        return _place(req, workers, match, cfg, Target.LOCAL, Reason.POLICY_LOCAL, threshold, local)
    if cfg.policy == "naive-hetero":
        blocked = _prfaas_blocked(workers, link, cfg)
        if blocked is not None:
            return _place(req, workers, match, cfg, Target.LOCAL, blocked, threshold, local)
        return _place(
            req, workers, match, cfg, Target.PRFAAS, Reason.POLICY_OFFLOAD, threshold, remote
        )
    if cfg.policy != "prfaas":
        raise ValueError(f"unknown routing policy {cfg.policy!r}")

    total = req.num_prompt_tokens
    l_pd, l_prfaas = match.cluster_tokens(local), match.cluster_tokens(remote)
    if link.bandwidth_scarce or not link.up:
        local_cache, remote_cache, incremental = local, remote, total - l_pd
    else:
        best = remote if l_prfaas > l_pd else local
        local_cache, remote_cache, incremental = best, best, total - max(l_pd, l_prfaas)
    if incremental > threshold:
        blocked = _prfaas_blocked(workers, link, cfg)
        if blocked is None:
            return _place(
                req, workers, match, cfg, Target.PRFAAS, Reason.OFFLOADED, threshold, remote_cache
            )
        return _place(req, workers, match, cfg, Target.LOCAL, blocked, threshold, local)
    if incremental > base:
        reason = Reason.BANDWIDTH_LIMITED
    elif total > threshold:
        reason = Reason.PREFIX_HIT
    else:
        reason = Reason.SHORT
    decision = _place(req, workers, match, cfg, Target.LOCAL, reason, threshold, local_cache)
    local_prefill = _prefill_cands(workers, local, (Role.PREFILL, Role.MIXED))
    if (
        decision.target is None
        and not local_prefill
        and _prfaas_blocked(workers, link, cfg) is None
    ):
        return _place(
            req, workers, match, cfg, Target.PRFAAS, Reason.LOCAL_PREFILL_UNAVAILABLE, threshold,
            remote_cache,
        )  # fmt: skip
    return decision


def overflow_to_prfaas(
    req: RouteRequest,
    workers: Sequence[WorkerSnapshot],
    match: PrefixMatch,
    link: LinkState,
    threshold: float,
    cfg: RoutingConfig,
) -> RouteDecision | None:
    """The offload that replaces a local placement whose prefill queue is over its wait budget
    (reason LOCAL_QUEUE_FULL); None when the policy has no PrfaaS cluster or it cannot take one."""
    if cfg.policy == "homogeneous-pd" or _prfaas_blocked(workers, link, cfg) is not None:
        return None
    remote = cfg.prfaas_cluster
    decision = _place(
        req, workers, match, cfg, Target.PRFAAS, Reason.LOCAL_QUEUE_FULL, threshold, remote
    )
    return decision if decision.target is not None else None


def missing_role(workers: Sequence[WorkerSnapshot], cfg: RoutingConfig) -> str | None:
    """Which role no eligible worker fills for `cfg.policy` ("decode" or "prefill"), or None when
    the policy can place some request: a local decode-capable worker, and a prefill-capable one
    locally or, unless the policy is homogeneous-pd, in the PrfaaS cluster."""
    local = [w for w in workers if w.eligible and w.cluster == cfg.local_cluster]
    if not any(w.role in (Role.DECODE, Role.MIXED) for w in local):
        return "decode"
    if any(w.role in (Role.PREFILL, Role.MIXED) for w in local):
        return None
    if cfg.policy != "homogeneous-pd" and _prefill_cands(
        workers, cfg.prfaas_cluster, (Role.PRFAAS, Role.PREFILL)
    ):
        return None
    return "prefill"
