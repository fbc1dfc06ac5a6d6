"""Workers that join by themselves, across real processes: a router with no topology workers
(`--workers registered`) learns every worker from `RegisterWorker`, serves through them (an
offload crosses to the PrfaaS worker's KV path too), relearns them after its own restart, and
forgets a worker that drains on SIGTERM — after that worker finished the request it was decoding."""

from __future__ import annotations

import signal
import threading
import time
import urllib.error
from pathlib import Path

import pytest

from prfaas.launcher.probes import free_port
from prfaas.launcher.supervisor import Supervisor
from tests.e2e.self_join import (
    RouterAddress,
    complete,
    metric,
    router_spec,
    router_topology,
    start_all,
    wait_joined,
    wait_ready,
    worker_spec,
)

LONG_PROMPT = "x" * 600  # above the router's threshold of 256 uncached tokens: offloaded
DECODERS = "prfaas_num_instances"
DRAIN_TOKENS = 300
"""20 ms decode steps: ~6 s, longer than the 5 s gRPC grace period a stop without drain gives."""


def _wait_for(predicate, timeout_s: float, what: str) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError(f"{what} not within {timeout_s} s")


@pytest.fixture
def sup(tmp_path: Path):
    supervisor = Supervisor(tmp_path / "logs")
    yield supervisor
    supervisor.stop_all(grace_s=15)


def test_workers_join_serve_survive_router_restart_and_drain(
    sup: Supervisor, tmp_path: Path
) -> None:
    router = RouterAddress(free_port(), free_port())
    topology = router_topology(tmp_path)
    start_all(sup, [
        router_spec("router", router, topology),
        worker_spec("prefill", "prfaas-0", router.grpc),
        worker_spec("pd", "pd-0", router.grpc, role="prefill"),
        worker_spec("pd", "pd-1", router.grpc, role="decode"),
    ])  # fmt: skip
    wait_ready(router.url)
    wait_joined(router.url, 3)

    # Served through registered workers: local, and offloaded (KV over the registered address).
    assert len(complete(router.url, "hello", 8)["choices"][0]["text"]) > 0
    offloaded = complete(router.url, LONG_PROMPT, 4)
    assert offloaded["usage"]["completion_tokens"] == 4
    assert metric(router.url, "prfaas_routing_decisions_total", route="offload") >= 1

    # The router restarts with an empty registry; the workers' keepalive brings them back.
    sup.kill("router", signal.SIGTERM)
    assert sup.child("router").popen.wait(timeout=15) == 0
    start_all(sup, [router_spec("router-restarted", router, topology)])
    rejoin_s = wait_ready(router.url, timeout_s=15)
    assert rejoin_s < 5, f"workers took {rejoin_s:.1f} s to rejoin a restarted router"
    assert complete(router.url, "again", 4)["usage"]["completion_tokens"] == 4

    # SIGTERM on the decode worker mid-request: it drains (finishes the request), then leaves.
    result: dict = {}

    def long_request() -> None:
        result["reply"] = complete(router.url, "drain me", DRAIN_TOKENS)

    placed = metric(router.url, "prfaas_routing_decisions_total")
    client = threading.Thread(target=long_request)
    client.start()
    _wait_for(lambda: metric(router.url, "prfaas_routing_decisions_total") > placed, 10,
              "placement")  # fmt: skip
    time.sleep(0.3)  # decoding on pd-1 now
    pd1 = sup.child("pd-1").popen
    pd1.send_signal(signal.SIGTERM)
    client.join(timeout=30)
    assert result["reply"]["usage"]["completion_tokens"] == DRAIN_TOKENS, "drain cut it short"
    assert pd1.wait(timeout=15) == 0
    _wait_for(lambda: metric(router.url, DECODERS, cluster="pd", role="decode") == 0, 10,
              "the router forgetting the drained decode worker")  # fmt: skip
    with pytest.raises(urllib.error.HTTPError) as refused:
        complete(router.url, "no decoder", 4)
    assert refused.value.code == 503  # a needed role has no worker: not an error to retry blindly
