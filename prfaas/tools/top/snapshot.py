"""What `prfaas top` shows, computed from scrapes: the data model behind the screen.

`build_snapshot` turns the router's current scrape (plus the previous one, for rates and windowed
percentiles) and any workers' own scrapes into a `TopSnapshot` of plain values. Rendering
(`render.py`) only lays those values out, so every number on the screen is tested here.

Sources, all Prometheus text:
- the router's `/metrics`: threshold t and its causes, link egress/capacity, routing decisions,
  TTFT/ITL histograms, HTTP errors, and its view of every worker (`prfaas_router_worker_*`,
  router/view_metrics.py), which stays true when a worker's own endpoint is down;
- optionally each worker's `/metrics` (running/waiting, KV usage, KV transfer failures).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from prfaas.tools.top.scrape import Scrape, bucket_delta, quantile

QUANTILES = (0.5, 0.9, 0.99)
TTFT = "prfaas_time_to_first_token_seconds"
ITL = "prfaas_inter_token_latency_seconds"
DONE = "prfaas_request_success_total"
DECISIONS = "prfaas_routing_decisions_total"


@dataclass(frozen=True)
class ThresholdView:
    tokens: float | None
    base_tokens: float | None
    reason: str
    """Cause of the latest move of t ("" if it never moved), e.g. raise:egress, lower:calm, plan."""
    reason_age_s: float | None
    bandwidth_scarce: bool | None


@dataclass(frozen=True)
class LinkView:
    egress_bytes_per_s: float | None
    capacity_bytes_per_s: float | None

    @property
    def utilization(self) -> float | None:
        if self.egress_bytes_per_s is None or not self.capacity_bytes_per_s:
            return None
        return self.egress_bytes_per_s / self.capacity_bytes_per_s


@dataclass(frozen=True)
class LatencyView:
    ttft_s: dict[float, float | None]
    itl_s: dict[float, float | None]
    window: str
    """"last N s" when computed between two scrapes, "since start" otherwise."""


@dataclass(frozen=True)
class WorkerView:
    worker: str
    cluster: str
    role: str
    healthy: bool
    draining: bool = False
    out_reason: str = ""
    queue_depth: float = 0.0
    seats_used: float | None = None
    seats_total: float | None = None
    heartbeat_age_s: float | None = None
    kv_egress_bytes_per_s: float = 0.0
    running: float | None = None
    waiting: float | None = None
    kv_usage: float | None = None
    metrics: str = "-"
    """Its own metrics endpoint: "-" (not given), "ok", or why it could not be read."""

    @property
    def state(self) -> str:
        if not self.healthy:
            return "DOWN"  # why: in the snapshot's notes (a cell this wide would wrap)
        return "draining" if self.draining else "serving"


@dataclass(frozen=True)
class TopSnapshot:
    router_url: str
    router_up: bool
    threshold: ThresholdView
    link: LinkView
    offload_fraction: float | None
    decisions: dict[str, float]
    """Routing decisions in the window by route/reason, e.g. {"offload/offloaded": 3}."""
    requests_per_s: float | None
    latency: LatencyView
    errors: dict[str, float]
    """Errors in the window by cause: "http 429", "finished error", "kv timeout (pd-1)"."""
    workers: list[WorkerView]
    notes: list[str] = field(default_factory=list)
    """Events the user must see: router unreachable/restarted, workers down."""


def build_snapshot(
    router: Scrape,
    previous: Scrape | None = None,
    workers: dict[str, Scrape] | None = None,
    last_good: Scrape | None = None,
) -> TopSnapshot:
    """`previous`: the router's previous successful scrape (None: cumulative since start).
    `workers`: own scrapes keyed by worker name (or URL when the name is not known).
    `last_good`: shown, marked stale, while the router is unreachable."""
    notes: list[str] = []
    workers = workers or {}
    current = router
    if not router.ok:
        notes.append(f"router {router.url} unreachable ({router.error})")
        if last_good is None:
            return _empty(router, notes, workers)
        notes.append("showing its last scrape; waiting for it to come back")
        current, previous = last_good, None
    if previous is not None and _restarted(current, previous):
        notes.append("router restarted: its counters reset, figures are since its start")
        previous = None
    window_s = current.taken_at_s - previous.taken_at_s if previous is not None else None
    window = f"last {window_s:.0f} s" if window_s else "since start"

    decisions = _delta_by(current, previous, DECISIONS, ("route", "reason"))
    offloaded = sum(v for k, v in decisions.items() if k.startswith("offload/"))
    total = sum(decisions.values())
    done = sum(_delta_by(current, previous, DONE, ("finished_reason",)).values())
    ttft, ttft_windowed = _window_buckets(current, previous, TTFT)
    itl, _ = _window_buckets(current, previous, ITL)
    latency = LatencyView(
        {q: quantile(ttft, q) for q in QUANTILES},
        {q: quantile(itl, q) for q in QUANTILES},
        window
        if ttft_windowed or previous is None
        else f"since start; none finished in the {window}",
    )
    views = _workers(current, workers)
    for view in views:
        if not view.healthy:
            notes.append(f"worker {view.worker} is DOWN: {view.out_reason or 'no heartbeat'}")
        if view.metrics.startswith("unreachable"):
            notes.append(f"worker {view.worker}'s own metrics endpoint is {view.metrics}")
    return TopSnapshot(
        router_url=router.url,
        router_up=router.ok,
        threshold=_threshold(current),
        link=_link(current),
        offload_fraction=offloaded / total if total else None,
        decisions=decisions,
        requests_per_s=done / window_s if window_s else None,
        latency=latency,
        errors=_errors(current, previous, workers),
        workers=views,
        notes=notes,
    )


def _empty(router: Scrape, notes: list[str], workers: dict[str, Scrape]) -> TopSnapshot:
    return TopSnapshot(
        router.url,
        False,
        ThresholdView(None, None, "", None, None),
        LinkView(None, None),
        None,
        {},
        None,
        LatencyView({}, {}, "-"),
        {},
        [_unlisted_worker(name, s) for name, s in workers.items()],
        notes,
    )


def _restarted(current: Scrape, previous: Scrape) -> bool:
    """A counter that went down: the router process started again between the scrapes."""
    for name in (f"{TTFT}_count", DONE, DECISIONS):
        now, before = current.value(name, 0.0), previous.value(name, 0.0)
        if now is not None and before is not None and now < before:
            return True
    return False


def _delta_by(
    current: Scrape, previous: Scrape | None, name: str, labels: tuple[str, ...]
) -> dict[str, float]:
    out: dict[str, float] = {}
    for source, sign in ((current, 1.0), (previous, -1.0)):
        if source is None:
            continue
        for key, value in source.series(name).items():
            have = dict(key)
            label = "/".join(have.get(label, "") for label in labels)
            out[label] = out.get(label, 0.0) + sign * value
    return {k: v for k, v in out.items() if v > 0}


def _window_buckets(
    current: Scrape, previous: Scrape | None, name: str
) -> tuple[list[tuple[float, float]], bool]:
    """The histogram over the window, and True; or since start, and False, when there is no
    window or nothing was observed in it (cumulative figures say more than an empty window)."""
    now = current.buckets(name)
    if previous is None:
        return now, False
    delta = bucket_delta(now, previous.buckets(name))
    return (delta, True) if delta and delta[-1][1] > 0 else (now, False)


def _threshold(s: Scrape) -> ThresholdView:
    changes = s.by_label("prfaas_routing_threshold_last_change_timestamp_seconds", "reason")
    reason, when = max(changes.items(), key=lambda kv: kv[1]) if changes else ("", None)
    scarce = s.value("prfaas_link_bandwidth_scarce")
    return ThresholdView(
        s.value("prfaas_routing_threshold_tokens"),
        s.value("prfaas_routing_threshold_base_tokens"),
        reason,
        max(0.0, s.taken_at_s - when) if when else None,
        None if scarce is None else scarce > 0,
    )


def _link(s: Scrape) -> LinkView:
    egress = s.value("prfaas_link_goodput_bytes_per_second")
    capacity = s.value("prfaas_link_capacity_bytes_per_second")
    utilization = s.value("prfaas_link_utilization_ratio")
    if capacity is None and egress and utilization:
        capacity = egress / utilization  # routers without the capacity gauge: implied by the ratio
    return LinkView(egress, capacity)


def _errors(
    current: Scrape, previous: Scrape | None, workers: dict[str, Scrape]
) -> dict[str, float]:
    errors = {
        f"http {code}": n
        for code, n in _delta_by(
            current, previous, "prfaas_http_errors_total", ("status_code",)
        ).items()
    }
    for reason, n in _delta_by(current, previous, DONE, ("finished_reason",)).items():
        if reason in ("abort", "error"):
            errors[f"finished {reason}"] = n
    for name, scrape in workers.items():
        for kind, n in scrape.by_label("prfaas_kv_transfer_failures_total", "kind").items():
            if n > 0:
                cause = kind if kind.startswith("kv") else f"kv {kind}"
                errors[f"{cause} ({name}, since start)"] = n
    return errors


def _workers(router: Scrape, own: dict[str, Scrape]) -> list[WorkerView]:
    reasons = {
        dict(k)["worker"]: dict(k)["reason"]
        for k in router.series("prfaas_router_worker_out_reason_info")
    }
    views = []
    seen: set[str] = set()
    for key, healthy in sorted(router.series("prfaas_router_worker_healthy").items()):
        labels = dict(key)
        worker = labels["worker"]
        seen.add(worker)

        def gauge(name: str, worker: str = worker) -> float | None:
            return router.value(f"prfaas_router_worker_{name}", worker=worker)

        view = WorkerView(
            worker=worker,
            cluster=labels.get("cluster", ""),
            role=labels.get("role", ""),
            healthy=healthy > 0,
            draining=(gauge("draining") or 0) > 0,
            out_reason=reasons.get(worker, ""),
            queue_depth=gauge("queue_depth") or 0.0,
            seats_used=gauge("decode_seats_used"),
            seats_total=gauge("decode_seats"),
            heartbeat_age_s=gauge("heartbeat_age_seconds"),
            kv_egress_bytes_per_s=gauge("kv_egress_bytes_per_second") or 0.0,
        )
        views.append(_with_own(view, own.get(worker)))
    views += [_unlisted_worker(name, s) for name, s in own.items() if name not in seen]
    return views


def _with_own(view: WorkerView, scrape: Scrape | None) -> WorkerView:
    """`view` with what the worker's own endpoint says (or that it could not be read)."""
    if scrape is None:
        return view
    if not scrape.ok:
        return replace(view, metrics=f"unreachable ({scrape.error})")
    worker = view.worker
    return replace(
        view,
        running=scrape.value("prfaas_num_requests_running", worker=worker),
        waiting=scrape.value("prfaas_num_requests_waiting", worker=worker),
        kv_usage=scrape.value("prfaas_kv_cache_usage_ratio", worker=worker),
        metrics="ok",
    )


def _unlisted_worker(name: str, scrape: Scrape) -> WorkerView:
    """A worker endpoint the router does not list (yet, or the router is unreachable)."""
    return _with_own(WorkerView(worker=name, cluster="?", role="?", healthy=scrape.ok), scrape)
