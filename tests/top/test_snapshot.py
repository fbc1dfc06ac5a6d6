"""`prfaas top`'s data model on hand-made scrapes: windows, causes, outages and restarts."""

from __future__ import annotations

import pytest

from prfaas.tools.top.scrape import Scrape, failed_scrape, parse_scrape, quantile
from prfaas.tools.top.snapshot import build_snapshot

URL = "http://router/metrics"


def router_text(*, ttft_buckets: tuple[int, int, int], offloads: int, locals_: int,
                errors_429: int = 0, healthy_pd1: bool = True) -> str:  # fmt: skip
    """Router exposition with TTFT buckets le=0.1, 1, +Inf (cumulative counts)."""
    b1, b2, binf = ttft_buckets
    down = (
        ""
        if healthy_pd1
        else 'prfaas_router_worker_out_reason_info{cluster="pd",reason="port refused",worker="pd-1"} 1.0\n'
    )
    return f"""\
# TYPE prfaas_time_to_first_token_seconds histogram
prfaas_time_to_first_token_seconds_bucket{{le="0.1",model_name="m"}} {b1}
prfaas_time_to_first_token_seconds_bucket{{le="1.0",model_name="m"}} {b2}
prfaas_time_to_first_token_seconds_bucket{{le="+Inf",model_name="m"}} {binf}
prfaas_time_to_first_token_seconds_count{{model_name="m"}} {binf}
prfaas_time_to_first_token_seconds_sum{{model_name="m"}} 1.0
# TYPE prfaas_request_success counter
prfaas_request_success_total{{finished_reason="length",model_name="m"}} {binf}
# TYPE prfaas_routing_decisions counter
prfaas_routing_decisions_total{{policy="prfaas",reason="offloaded",route="offload"}} {offloads}
prfaas_routing_decisions_total{{policy="prfaas",reason="short",route="local"}} {locals_}
# TYPE prfaas_http_errors counter
prfaas_http_errors_total{{status_code="429"}} {errors_429}
# TYPE prfaas_routing_threshold_tokens gauge
prfaas_routing_threshold_tokens 3000.0
# TYPE prfaas_routing_threshold_base_tokens gauge
prfaas_routing_threshold_base_tokens 2000.0
# TYPE prfaas_routing_threshold_last_change_timestamp_seconds gauge
prfaas_routing_threshold_last_change_timestamp_seconds{{reason="plan"}} 90.0
prfaas_routing_threshold_last_change_timestamp_seconds{{reason="raise:egress"}} 97.0
# TYPE prfaas_link_goodput_bytes_per_second gauge
prfaas_link_goodput_bytes_per_second{{link="prfaas-pd"}} 8e8
# TYPE prfaas_link_utilization_ratio gauge
prfaas_link_utilization_ratio{{link="prfaas-pd"}} 0.8
# TYPE prfaas_router_worker_healthy gauge
prfaas_router_worker_healthy{{cluster="pd",role="decode",worker="pd-1"}} {1.0 if healthy_pd1 else 0.0}
prfaas_router_worker_healthy{{cluster="prfaas",role="prfaas",worker="prfaas-0"}} 1.0
# TYPE prfaas_router_worker_out_reason_info gauge
{down}# TYPE prfaas_router_worker_decode_seats_used gauge
prfaas_router_worker_decode_seats_used{{cluster="pd",role="decode",worker="pd-1"}} 3.0
# TYPE prfaas_router_worker_decode_seats gauge
prfaas_router_worker_decode_seats{{cluster="pd",role="decode",worker="pd-1"}} 8.0
# TYPE prfaas_router_worker_queue_depth gauge
prfaas_router_worker_queue_depth{{cluster="prfaas",role="prfaas",worker="prfaas-0"}} 5.0
"""


def scrape_at(t: float, **kw: object) -> Scrape:
    return parse_scrape(URL, router_text(**kw), t)  # type: ignore[arg-type]


def cumulative_median(scrape: Scrape) -> float | None:
    return build_snapshot(scrape).latency.ttft_s[0.5]


def test_quantile_interpolates_inside_the_bucket_like_histogram_quantile() -> None:
    buckets = [(0.1, 10.0), (1.0, 30.0), (float("inf"), 30.0)]
    assert quantile(buckets, 0.25) == pytest.approx(0.1 * 7.5 / 10)
    assert quantile(buckets, 0.5) == pytest.approx(0.1 + 0.9 * 5 / 20)
    assert quantile([(0.1, 0.0), (float("inf"), 0.0)], 0.5) is None


def test_window_between_scrapes_not_since_start() -> None:
    # 100 fast requests before the window, then 10 slow ones (0.1..1 s) in it.
    before = scrape_at(95.0, ttft_buckets=(100, 100, 100), offloads=50, locals_=50)
    now = scrape_at(100.0, ttft_buckets=(100, 110, 110), offloads=59, locals_=51, errors_429=2)
    snap = build_snapshot(now, before)
    assert snap.latency.window == "last 5 s"
    assert snap.latency.ttft_s[0.5] == pytest.approx(0.1 + 0.9 * 0.5)
    assert snap.offload_fraction == pytest.approx(0.9)
    assert snap.requests_per_s == pytest.approx(10 / 5)
    assert snap.errors == {"http 429": 2.0}
    quiet = build_snapshot(
        scrape_at(105.0, ttft_buckets=(100, 110, 110), offloads=59, locals_=51), now
    )
    assert quiet.latency.window == "since start; none finished in the last 5 s"
    assert quiet.latency.ttft_s[0.5] == cumulative_median(now)
    cumulative = build_snapshot(now)
    assert cumulative.latency.window == "since start"
    assert cumulative.latency.ttft_s[0.5] is not None and cumulative.latency.ttft_s[0.5] < 0.1


def test_threshold_cause_is_the_latest_change_and_link_capacity_implied_by_utilization() -> None:
    snap = build_snapshot(scrape_at(100.0, ttft_buckets=(1, 1, 1), offloads=1, locals_=0))
    assert (snap.threshold.tokens, snap.threshold.base_tokens) == (3000.0, 2000.0)
    assert snap.threshold.reason == "raise:egress"
    assert snap.threshold.reason_age_s == pytest.approx(3.0)
    assert snap.link.capacity_bytes_per_s == pytest.approx(1e9)
    assert snap.link.utilization == pytest.approx(0.8)


def test_dead_worker_is_listed_down_with_the_routers_reason_and_its_endpoint_unreachable() -> None:
    router = scrape_at(100.0, ttft_buckets=(1, 1, 1), offloads=1, locals_=0, healthy_pd1=False)
    own = {"pd-1": failed_scrape("http://pd-1/metrics", 100.0, "ConnectError")}
    snap = build_snapshot(router, None, own)
    pd1 = next(w for w in snap.workers if w.worker == "pd-1")
    assert not pd1.healthy and pd1.state == "DOWN"
    assert "worker pd-1 is DOWN: port refused" in snap.notes
    assert pd1.metrics == "unreachable (ConnectError)"
    assert (pd1.seats_used, pd1.seats_total) == (3.0, 8.0)
    assert "worker pd-1's own metrics endpoint is unreachable (ConnectError)" in snap.notes
    prfaas0 = next(w for w in snap.workers if w.worker == "prfaas-0")
    assert prfaas0.healthy and prfaas0.queue_depth == 5.0


def test_router_restart_resets_the_window_and_is_said() -> None:
    before = scrape_at(95.0, ttft_buckets=(100, 100, 100), offloads=50, locals_=50)
    restarted = scrape_at(100.0, ttft_buckets=(2, 3, 3), offloads=1, locals_=2)
    snap = build_snapshot(restarted, before)
    assert any("router restarted" in note for note in snap.notes)
    assert snap.latency.window == "since start"
    assert snap.offload_fraction == pytest.approx(1 / 3)


def test_unreachable_router_shows_its_last_scrape_marked_stale() -> None:
    last = scrape_at(95.0, ttft_buckets=(1, 1, 1), offloads=1, locals_=1)
    snap = build_snapshot(failed_scrape(URL, 100.0, "ConnectError"), None, None, last_good=last)
    assert not snap.router_up
    assert snap.notes[0] == f"router {URL} unreachable (ConnectError)"
    assert snap.threshold.tokens == 3000.0 and len(snap.workers) == 2
    never_seen = build_snapshot(failed_scrape(URL, 100.0, "ConnectError"))
    assert not never_seen.router_up and never_seen.workers == []
