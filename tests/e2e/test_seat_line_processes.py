"""A decode worker's line for seats between real processes (issue 17: worker/seat_line.py).

Real emulated workers over gRPC: a PD-P worker and two PD-D workers with one seat each
(`--max-num-seqs 1`, `--decode-admission-slack 0`), registered with a real router process (A).
Two streamed requests through A take both seats and are held open. Then:

- A, which counts its own seats, refuses a third request itself: 429 with Retry-After;
- a second router replica (B: the router's own `Dispatcher` in this process, over the same
  workers) whose view of them is still from before the seats were taken places anyway, as a
  replica does between polls: both decode workers refuse the admission (`overloaded`), B retries
  the second after the first and, with none left, answers 429 with Retry-After;
- with one seat given back (its stream closed), B's next request is refused by the full worker,
  retried on the other and served; A serves too.

No request fails otherwise: A answered no error but 429, and every request served has all its
tokens. Ordering is structural: each step waits for the workers' own load reports.
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import grpc
import pytest

from prfaas._proto.prfaas.v1 import worker_pb2, worker_pb2_grpc
from prfaas.launcher.probes import free_port
from prfaas.launcher.supervisor import ProcessSpec, Supervisor
from prfaas.roles import Role
from prfaas.router.attempt import FlowTimeouts
from prfaas.router.control import ShortTermController
from prfaas.router.dispatcher import DispatchConfig, Dispatcher
from prfaas.router.generation_backend import GenerationFinished, GenerationRequest, Overloaded
from prfaas.router.http_errors import from_backend_error
from prfaas.router.policy import RouteDecision, RoutingConfig
from prfaas.router.prefix_index import PrefixIndex
from prfaas.router.registry import WorkerHandle, WorkerRegistry
from prfaas.sampling import SamplingParams
from tests.e2e.self_join import (
    RouterAddress,
    complete,
    metric,
    router_spec,
    router_topology,
    start_all,
    wait_ready,
    worker_spec,
)

# A 100 ms step (the later option wins) makes a held stream last 300 s, far past the test: with
# the emulator's steps timed end to end (no per-step overhead left), 3,000 steps of 20 ms ended
# after 60 s, which a loaded CI run reached, and the seat came free under the test.
ONE_SEAT = ("--max-num-seqs", "1", "--decode-admission-slack", "0", "--decode-step-ms", "100")
HELD_TOKENS = 3000  # 300 s of decode at 100 ms a step: held until its stream is closed


@pytest.fixture
def sup(tmp_path: Path):
    supervisor = Supervisor(tmp_path / "logs")
    yield supervisor
    supervisor.stop_all(grace_s=15)


def _option(spec: ProcessSpec, name: str) -> str:
    return spec.argv[spec.argv.index(name) + 1]


def _load(spec: ProcessSpec) -> worker_pb2.WorkerLoad:
    with grpc.insecure_channel(f"127.0.0.1:{_option(spec, '--grpc-port')}") as channel:
        return worker_pb2_grpc.WorkerStub(channel).GetLoad(worker_pb2.LoadRequest(), timeout=10)


def _wait(what: str, check, timeout_s: float = 30) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


class _HeldStream:
    """A streamed completion through router A, read up to its first token and then left open
    (its seat stays taken) until `close()`, which the router sees as the client leaving."""

    def __init__(self, router: RouterAddress, prompt: str) -> None:
        body = {"model": "prfaas-small", "prompt": prompt, "max_tokens": HELD_TOKENS,
                "temperature": 0, "ignore_eos": True, "stream": True}  # fmt: skip
        self.conn = http.client.HTTPConnection("127.0.0.1", router.http_port, timeout=60)
        self.conn.request("POST", "/v1/completions", json.dumps(body),
                          {"Content-Type": "application/json"})  # fmt: skip
        self.response = self.conn.getresponse()
        assert self.response.status == 200, self.response.read()
        while b'"text"' not in (line := self.response.readline()):
            assert line, "stream ended before its first token"

    def close(self) -> None:
        self.response.close()
        self.conn.close()


def _replica_b(specs: dict[str, ProcessSpec]) -> Dispatcher:
    """Router replica B: its registry holds the workers' reports from before the seats were taken
    (it is not started, so it never polls again)."""
    registry = WorkerRegistry(PrefixIndex(64))
    for wid, spec in specs.items():
        kv = f"127.0.0.1:{_option(spec, '--kv-port')}"
        handle = registry.add(WorkerHandle(wid, "pd", "pd", Role(_option(spec, "--role")),
                                           f"127.0.0.1:{_option(spec, '--grpc-port')}", kv, kv))  # fmt: skip
        handle.healthy, handle.load, handle.load_asked_s = True, _load(spec), time.monotonic()
    config = DispatchConfig(model_name="prfaas-small",
                            routing=RoutingConfig(policy="prfaas", local_cluster="pd"),
                            timeouts=FlowTimeouts(admit_s=20, token_s=20))  # fmt: skip
    return Dispatcher(registry, ShortTermController(256.0), config)


async def _through_b(b: Dispatcher, tried: list[str], max_tokens: int = 4) -> int:
    """Tokens served through B, the decode workers it tried appended to `tried`; raises
    Overloaded when refused for capacity."""
    prompt = tuple(ord(c) for c in f"replica b {uuid.uuid4().hex[:6]}")
    req = GenerationRequest(uuid.uuid4().hex, prompt, SamplingParams(max_tokens=max_tokens))
    tokens = 0
    async for item in b.generate_routed(req):
        if isinstance(item, RouteDecision):
            tried.append(item.decode_worker or "")
        elif not isinstance(item, GenerationFinished):
            tokens += len(item.token_ids)
    return tokens


def _served_by_a(router: RouterAddress, prompt: str, timeout_s: float = 30) -> dict:
    """A client that honours Retry-After: A learns of a seat another replica gave back from the
    worker's next report (polled every 0.5 s), so it may refuse until then."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return complete(router.url, prompt, 4)
        except urllib.error.HTTPError as exc:
            if exc.code != 429 or time.monotonic() > deadline:
                raise
            time.sleep(float(exc.headers["Retry-After"]))


def _refused_by_a(router: RouterAddress) -> urllib.error.HTTPError:
    with pytest.raises(urllib.error.HTTPError) as refused:
        complete(router.url, "a third request through A", 4)
    return refused.value


@pytest.mark.xfail(
    strict=False,
    reason="known bug, not yet diagnosed (found 2026-12-03): in 2 of 3 local runs, closing the held "
    "stream on pd-2 also ended the one on pd-1 about 2 s later (both seats free, then B is served "
    "by pd-1 without a refusal); it fails the same way at b6e76e4, whose clean-clone CI passed",
)
async def test_full_decode_workers_refuse_and_routers_answer_429(
    sup: Supervisor, tmp_path: Path
) -> None:
    a = RouterAddress(free_port(), free_port())
    specs = {
        "pd-0": worker_spec("pd", "pd-0", a.grpc, role="prefill"),
        "pd-1": worker_spec("pd", "pd-1", a.grpc, role="decode", extra=ONE_SEAT),
        "pd-2": worker_spec("pd", "pd-2", a.grpc, role="decode", extra=ONE_SEAT),
    }
    start_all(sup, [router_spec("router-a", a, router_topology(tmp_path)), *specs.values()])
    wait_ready(a.url)
    _wait("A to poll both decode workers (one seat each)", lambda: (
        metric(a.url, "prfaas_router_worker_healthy", role="decode") == 2
        and metric(a.url, "prfaas_router_worker_decode_seats", role="decode") == 2
    ))  # fmt: skip
    errors_before = metric(a.url, "prfaas_http_errors_total")
    refusals_before = metric(a.url, "prfaas_http_errors_total", status_code="429")
    b = _replica_b(specs)  # its view: every seat free
    decoders = ("pd-1", "pd-2")

    def running() -> dict[str, int]:
        return {w: _load(specs[w]).num_running for w in decoders}

    held = {}
    try:
        for i in range(2):  # one at a time: A seats the second where its own count has room
            stream = _HeldStream(a, f"held stream {i}")
            _wait(f"held stream {i} seated", lambda i=i: sum(running().values()) == i + 1)
            seated = running()
            held[next(w for w in decoders if seated[w] == 1 and w not in held)] = stream
        assert running() == {"pd-1": 1, "pd-2": 1}

        # A counts both seats taken: it refuses by itself.
        refused = _refused_by_a(a)
        assert refused.code == 429 and refused.headers["Retry-After"]
        # B sees free seats and places: each worker refuses, B retries the other, then 429.
        tried: list[str] = []
        with pytest.raises(Overloaded) as overloaded:
            await _through_b(b, tried)
        assert tried == ["pd-1", "pd-2"]  # each refused (`overloaded`); then no decoder is left
        api = from_backend_error(overloaded.value)
        assert api.status_code == 429 and api.headers == {"Retry-After": "1"}
        assert running() == {"pd-1": 1, "pd-2": 1}  # nobody got past the seats

        held.pop("pd-2").close()  # pd-2's seat is given back (A aborts the request)
        _wait("pd-2's seat free", lambda: _load(specs["pd-2"]).num_live_requests == 0)
        tried = []
        assert await _through_b(b, tried) == 4  # pd-1 first (same view, smaller id): refused
        assert tried == ["pd-1", "pd-2"]
        _wait("B's request done on pd-2", lambda: _load(specs["pd-2"]).num_live_requests == 0)
        assert _served_by_a(a, "after a seat was given back")["usage"]["completion_tokens"] == 4
    finally:
        for stream in held.values():
            stream.close()
    _wait("every seat free", lambda: sum(_load(specs[w]).num_live_requests for w in decoders) == 0)

    # A answered no error but 429s (the one above, and any while its view of pd-2 was a poll
    # old): no 500, no failed request.
    refusals = metric(a.url, "prfaas_http_errors_total", status_code="429") - refusals_before
    assert metric(a.url, "prfaas_http_errors_total") - errors_before == refusals >= 1
    assert metric(a.url, "prfaas_request_success_total", finished_reason="error") == 0
    # The PD-P worker's prefill histogram (issue 17, the planner's cluster-wide arrivals) counts
    # every prefill it completed for a served request: the two held, B's and A's last.
    assert sum(_load(specs["pd-0"]).prefill_length_counts) >= 4
