"""Issue 10 item 3 across real processes: a supervised deployment (`prfaas up`'s machinery, emulated
backend) survives SIGKILL of each process kind, and the router avoids a link that is down.

One deployment serves the whole module; each test leaves it whole again (the killed child back).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from openai import OpenAI

from prfaas.launcher.deployment import Deployment
from prfaas.launcher.probes import http_ready
from prfaas.launcher.relay_control import relay_command
from prfaas.launcher.restart_policy import RestartPolicy
from tests.e2e.deployments import make_topology, start
from tests.e2e.test_deployment import metric_value

# Long prompts (> threshold 256 tokens) are offloaded to PrfaaS; a counter keeps them distinct so
# that no prefix hit brings one under the threshold.
_serial = itertools.count()
HEAL_POLICY = RestartPolicy(backoff_initial_s=0.2, backoff_max_s=2.0, crash_loop_restarts=10)


def long_prompt() -> str:
    return f"{next(_serial)} " + "lorem ipsum dolor " * 40


@pytest.fixture(scope="module")
def healing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    topo = make_topology(policy="prfaas", backend="emulated")
    log_dir = Path(tmp_path_factory.mktemp("heal"))
    deployment = start(topo, log_dir, metrics=True, supervise=True, restart_policy=HEAL_POLICY)
    try:
        yield deployment
    finally:
        deployment.stop()


def _client(d: Deployment, max_retries: int = 0) -> OpenAI:
    return OpenAI(
        base_url=d.endpoints().http, api_key="unused", max_retries=max_retries, timeout=60
    )


def complete(d: Deployment, prompt: str, max_tokens: int = 4, max_retries: int = 0) -> None:
    reply = _client(d, max_retries).completions.create(
        model="prfaas-tiny", prompt=prompt, max_tokens=max_tokens, extra_body={"ignore_eos": True}
    )
    assert reply.usage.completion_tokens == max_tokens


def routed(d: Deployment, route: str, reason: str | None = None) -> float:
    labels = {"route": route} | ({"reason": reason} if reason else {})
    return metric_value(d.endpoints().metrics[0], "prfaas_routing_decisions_total", **labels)


def offload_again_within(d: Deployment, timeout_s: float) -> float:
    """Send long requests until one is offloaded; returns the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        before = routed(d, "offload")
        complete(d, long_prompt())
        if routed(d, "offload") > before:
            return time.monotonic() - started
        time.sleep(0.2)
    raise AssertionError(f"no long request offloaded within {timeout_s:.0f}s")


class Load:
    """A client sending short and long requests back to back on a thread; records every failure."""

    def __init__(self, d: Deployment) -> None:
        self.d, self.ok, self.failures = d, 0, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        for n in itertools.count():
            if self._stop.is_set():
                return
            try:
                complete(self.d, long_prompt() if n % 2 else f"short {n}")
                self.ok += 1
            except Exception as exc:  # every failure is a finding; keep its text
                self.failures.append(repr(exc))

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=120)


def test_sigkilled_prfaas_worker_is_restarted_and_taken_back(healing: Deployment) -> None:
    sup = healing.supervisor
    with Load(healing) as load:
        time.sleep(1.0)
        old_pid = sup.pid("prfaas-0")
        before = sup.kill("prfaas-0")
        sup.wait_restarted("prfaas-0", before, timeout_s=90)
        offload_again_within(healing, timeout_s=30)
        time.sleep(0.5)
    assert sup.pid("prfaas-0") != old_pid and sup.restarts("prfaas-0") == before + 1
    assert load.failures == [] and load.ok >= 4
    # The restarted worker re-announces its cache to the router's index: the same long prompt a
    # second time finds it there, either offloaded onto it (a PrfaaS prefix hit) or, when the
    # link is abundant, moved from it into the local prefill worker (an imported prefix move).
    prompt = long_prompt()
    complete(healing, prompt)
    url = healing.endpoints().metrics[0]

    def reuse() -> tuple[float, float]:
        return (
            metric_value(url, "prfaas_router_prefix_hit_tokens_total", cluster="prfaas"),
            metric_value(url, "prfaas_prefix_transfers_total", outcome="imported"),
        )

    before_reuse = reuse()
    time.sleep(1.0)  # the cache events stream to the router
    complete(healing, prompt)
    after_reuse = reuse()
    assert after_reuse[0] > before_reuse[0] or after_reuse[1] > before_reuse[1]


def test_relay_down_long_requests_stay_local_until_it_is_up(healing: Deployment) -> None:
    control = healing.endpoints().relay_controls["link-pd-1"]  # pd-1 decodes
    offloads, unavailable = (
        routed(healing, "offload"),
        routed(healing, "local", "prfaas_unavailable"),
    )
    assert relay_command(control, "down") == "ok"
    try:
        for _ in range(5):
            complete(healing, long_prompt())
        # At most the first long request tries PrfaaS (and falls back, locally, perhaps reusing
        # the prefix PrfaaS computed); the 4 after it are placed locally at once.
        assert routed(healing, "offload") - offloads <= 1
        assert routed(healing, "local", "prfaas_unavailable") - unavailable >= 4
    finally:
        assert relay_command(control, "up") == "ok"
    offload_again_within(healing, timeout_s=10)


def test_sigkilled_relay_is_restarted_and_offloads_resume(healing: Deployment) -> None:
    sup = healing.supervisor
    before = sup.kill("link-pd-1")
    complete(healing, long_prompt())  # served while the relay is down (locally if need be)
    sup.wait_restarted("link-pd-1", before, timeout_s=60)
    offload_again_within(healing, timeout_s=15)


@pytest.mark.parametrize("name", ["pd-1", "router"])
def test_sigkilled_decode_worker_and_router_come_back(healing: Deployment, name: str) -> None:
    sup = healing.supervisor
    before = sup.kill(name)
    sup.wait_restarted(name, before, timeout_s=90)
    # The router's registry polls a restarted worker back to healthy (/ready needs a decoder).
    ready = f"http://127.0.0.1:{healing.topo.http_port}/ready"
    deadline = time.monotonic() + 30
    while not http_ready(ready) and time.monotonic() < deadline:
        time.sleep(0.2)
    # Right after the restart a loaded machine answered 429 "no worker has capacity" once (full
    # suite at load 8; not reproduced alone, cause not pinned down). The OpenAI SDK's own retries
    # of a 429 with Retry-After are what a client does, so they are allowed here.
    complete(healing, "short after restart", max_retries=2)
    offload_again_within(healing, timeout_s=15)
    assert not sup.ended.is_set()
