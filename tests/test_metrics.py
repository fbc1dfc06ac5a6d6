"""Metric groups: values land where expected, groups share a registry, promtool accepts them."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from prometheus_client import CollectorRegistry

from prfaas.metrics import (
    E2E_BUCKETS_S,
    ITL_BUCKETS_S,
    TTFT_BUCKETS_S,
    LinkStats,
    RequestStats,
    RouterMetrics,
    TransferMetrics,
    TransferStats,
    WorkerMetrics,
    WorkerStats,
    render,
)


def promtool_check(text: bytes) -> None:
    """Fail with promtool's findings when `promtool check metrics` rejects `text`."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip(
            "promtool not installed (Debian package `prometheus`: apt-get install -y prometheus)"
        )
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, timeout=60
    )
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()


def populated_registry() -> CollectorRegistry:
    """One registry holding every group, as an all-in-one process would, with data in each."""
    registry = CollectorRegistry()
    router = RouterMetrics(registry, "m")
    router.record_request(RequestStats("stop", 1.2, 0.3, [0.02, 0.03], 100, 3, 64))
    router.record_routing("prfaas", "offload", "uncached_above_threshold", "prfaas", 512)
    router.set_control_state(
        2048, {("pd", "prefill"): 2, ("pd", "decode"): 3, ("prfaas", "prefill"): 4}
    )
    router.record_http_error(429)
    workers = WorkerMetrics(registry, cluster="pd")
    workers.record_step(WorkerStats("pd-0", 5, 2, 0.25))
    workers.record_step(WorkerStats("pd-1", 1, 0, 0.5))
    workers.record_prefix_lookup("pd-0", 1000, 512)
    workers.record_tokens("pd-0", 488, 7)
    transfer = TransferMetrics(registry)
    transfer.record_transfer(TransferStats("prfaas-pd", "sent", 3 << 20, 0.4, 0.0))
    transfer.record_transfer(TransferStats("prfaas-pd", "received", 3 << 20, 0.45, 0.05))
    transfer.record_failure("prfaas-pd", "timeout")
    transfer.record_link(LinkStats("prfaas-pd", 1.25e8, 0.8, 0.02, 3))
    return registry


def test_bucket_lists_are_vllms() -> None:
    assert TTFT_BUCKETS_S[0] == 0.001 and TTFT_BUCKETS_S[-1] == 2560 and len(TTFT_BUCKETS_S) == 22
    assert ITL_BUCKETS_S[0] == 0.01 and ITL_BUCKETS_S[-1] == 80 and len(ITL_BUCKETS_S) == 19
    assert E2E_BUCKETS_S[0] == 0.3 and E2E_BUCKETS_S[-1] == 7680 and len(E2E_BUCKETS_S) == 21


def test_values_recorded() -> None:
    registry = populated_registry()
    value = registry.get_sample_value
    assert value("prfaas_time_to_first_token_seconds_count", {"model_name": "m"}) == 1
    assert (
        value("prfaas_time_to_first_token_seconds_bucket", {"model_name": "m", "le": "0.25"}) == 0
    )
    assert value("prfaas_time_to_first_token_seconds_bucket", {"model_name": "m", "le": "0.5"}) == 1
    assert value("prfaas_inter_token_latency_seconds_count", {"model_name": "m"}) == 2
    assert value("prfaas_prompt_tokens_total", {"model_name": "m"}) == 100
    assert value("prfaas_generation_tokens_total", {"model_name": "m"}) == 3
    assert (
        value("prfaas_request_success_total", {"model_name": "m", "finished_reason": "stop"}) == 1
    )
    assert (
        value("prfaas_request_success_total", {"model_name": "m", "finished_reason": "length"}) == 0
    )
    decision = {"policy": "prfaas", "route": "offload", "reason": "uncached_above_threshold"}
    assert value("prfaas_routing_decisions_total", decision) == 1
    assert value("prfaas_router_prefix_hit_tokens_total", {"cluster": "prfaas"}) == 512
    assert value("prfaas_routing_threshold_tokens") == 2048
    assert value("prfaas_num_instances", {"cluster": "pd", "role": "decode"}) == 3
    assert value("prfaas_num_requests_running", {"cluster": "pd", "worker": "pd-1"}) == 1
    assert value("prfaas_num_requests_waiting", {"cluster": "pd", "worker": "pd-0"}) == 2
    assert value("prfaas_prefix_cache_hits_total", {"cluster": "pd", "worker": "pd-0"}) == 512
    assert value("prfaas_kv_transfer_sent_bytes_total", {"link": "prfaas-pd"}) == 3 << 20
    assert value("prfaas_kv_transfer_exposed_seconds_count", {"link": "prfaas-pd"}) == 1
    assert value("prfaas_kv_transfer_failures_total", {"link": "prfaas-pd", "kind": "timeout"}) == 1
    assert value("prfaas_link_retransmits_total", {"link": "prfaas-pd"}) == 3
    assert value("prfaas_link_rtt_seconds", {"link": "prfaas-pd"}) == 0.02


def test_groups_on_separate_registries_do_not_collide() -> None:
    first, second = CollectorRegistry(), CollectorRegistry()
    RouterMetrics(first).record_http_error(400)
    RouterMetrics(second)
    assert second.get_sample_value("prfaas_http_errors_total", {"status_code": "400"}) is None
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        RouterMetrics(first)


def test_every_name_is_prefixed_and_promtool_accepts_it() -> None:
    body, content_type = render(populated_registry())
    assert content_type.startswith("text/plain")
    names = [line.split()[2] for line in body.decode().splitlines() if line.startswith("# TYPE")]
    assert len(names) >= 25
    assert all(name.startswith("prfaas_") for name in names), names
    promtool_check(body)
