"""Two router replicas serve the same self-registering workers (issue 17 item 3).

Each worker registers with both routers (`--router a,b`, as a Kubernetes headless Service resolves
to one address per router pod). Requests go through both routers at once — short ones served in
the PD cluster, long ones offloaded across to the PrfaaS worker — and none may fail. A prompt
first served through router A is then sent through router B: B places it with the prefix it
learned from the worker's cache-event stream (it never saw the first request), so the reply
reports cached tokens."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
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

NUM_REQUESTS = 24
LONG_PROMPT = "y" * 700  # above the routers' threshold of 256 uncached tokens: offloaded
SHARED_PREFIX = "the prefix both routers index " * 12  # ~360 bytes: several 64-token blocks


@pytest.fixture
def sup(tmp_path: Path):
    supervisor = Supervisor(tmp_path / "logs")
    yield supervisor
    supervisor.stop_all(grace_s=15)


def _usage(reply: dict) -> tuple[int, int]:
    usage = reply["usage"]
    return usage["completion_tokens"], usage["prompt_tokens_details"]["cached_tokens"]


def test_two_routers_serve_the_same_registered_workers(sup: Supervisor, tmp_path: Path) -> None:
    routers = [RouterAddress(free_port(), free_port()) for _ in range(2)]
    both = ",".join(r.grpc for r in routers)
    topology = router_topology(tmp_path)
    start_all(sup, [
        router_spec("router-a", routers[0], topology),
        router_spec("router-b", routers[1], topology),
        worker_spec("prefill", "prfaas-0", both),
        worker_spec("pd", "pd-0", both, role="prefill"),
        worker_spec("pd", "pd-1", both, role="decode"),
        worker_spec("pd", "pd-2", both, role="decode"),
    ])  # fmt: skip
    for router in routers:
        wait_ready(router.url)
        wait_joined(router.url, 4)
    # /ready answers 503 until the workers have joined, and wait_ready polls it: those count in
    # prfaas_http_errors_total too, so the no-failure check below counts from here.
    errors_before = {r.url: metric(r.url, "prfaas_http_errors_total") for r in routers}

    def one(i: int) -> dict:
        url = routers[i % 2].url
        prompt = LONG_PROMPT + str(i) if i % 3 == 0 else f"request {i}"
        return complete(url, prompt, 6, timeout_s=60)

    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(one, range(NUM_REQUESTS)))
    assert [_usage(r)[0] for r in replies] == [6] * NUM_REQUESTS
    for router in routers:
        served = metric(router.url, "prfaas_routing_decisions_total")
        assert served >= NUM_REQUESTS / 2, f"{router.url} placed {served}"
        assert metric(router.url, "prfaas_routing_decisions_total", route="offload") >= 1

    # Router B never saw this prompt; the prefix index it built from the workers' cache events does.
    first = complete(routers[0].url, SHARED_PREFIX + "first", 2)
    assert _usage(first)[1] == 0
    second = complete(routers[1].url, SHARED_PREFIX + "second", 2)
    assert _usage(second)[1] >= 64, json.dumps(second["usage"])

    # No request failed on either router: no HTTP error answered, and every reply succeeded.
    for router in routers:
        assert metric(router.url, "prfaas_http_errors_total") == errors_before[router.url]
        assert metric(router.url, "prfaas_request_success_total", finished_reason="error") == 0
