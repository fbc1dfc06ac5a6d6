"""The two security-cost benchmarks run end to end at tiny sizes and report what they measured:
KV goodput with TLS vs plain (`prfaas bench transfer --scenario tls`) and the router's latency with
mTLS + HTTPS + API key vs plain (`prfaas bench router-security`; every timed request must answer
200, so a secure router that refused the benchmark's key or certificate fails it)."""

from __future__ import annotations

import argparse

from prfaas.tools.benchmarks import router_security_cost
from prfaas.tools.benchmarks.transfer_tls import scenario_tls


def test_transfer_tls_scenario_reports_both_modes_and_their_ratio() -> None:
    args = argparse.Namespace(loopback_mib=8, tls_rounds=2, connections=2, chunk_mib=1.0)
    out = scenario_tls(args)
    assert out["plain_GBps_median"] > 0 and out["tls_GBps_median"] > 0
    ratio = out["tls_GBps_median"] / out["plain_GBps_median"]
    assert abs(out["tls_over_plain_median"] - ratio) < 1e-9
    assert len(out["tls_over_plain_per_round"]) == 2


def test_router_security_benchmark_measures_both_routers() -> None:
    out = router_security_cost.measure(requests=5, fresh_requests=2)
    for kind in ("keep_alive", "new_connection"):
        summary = out[kind]
        assert isinstance(summary, dict)
        assert summary["plain_p50_ms"] > 0 and summary["secure_p50_ms"] > 0
        assert summary["secure_p99_ms"] >= summary["secure_p50_ms"]
