"""Issue 10 "one bad request fails alone", at the entries, across real processes: a router and a
mixed PD worker running the tiny torch model, started by `prfaas up`'s machinery.

While a healthy `Router.Generate` streams, requests with token id 70000, token id -3 and
temperature NaN are sent to the router and, bypassing it, straight to the worker's `Generate`,
`Prefill` and `ImportPrefix`. Every one is refused at the entry, in the entry checks' words (an
"invalid_argument" event or INVALID_ARGUMENT); the healthy request completes; no engine step
failed (the worker's log says so for every failed step) and the worker holds nothing afterwards.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from prfaas._proto.prfaas.v1 import (
    common_pb2,
    router_pb2,
    router_pb2_grpc,
    worker_pb2,
    worker_pb2_grpc,
)
from prfaas.launcher.deployment import Deployment
from prfaas.security import identities
from prfaas.security.channels import open_channel
from tests.e2e.deployments import make_topology, start
from tests.e2e.processes import WorkerProc, wait_leak_free

BLOCK = 64
HEALTHY_TOKENS = 24
GREEDY = {"max_tokens": HEALTHY_TOKENS, "ignore_eos": True}
# (prompt ids, sampling fields, what the refusal must say: the entry checks' own wording, which
# the engine's admission check, a later line of defence, does not use)
BAD = [
    ([1, 70000, 2], GREEDY, "prompt_ids[1] = 70000 is not a token id"),
    ([-3, 1, 2], GREEDY, "prompt_ids[0] = -3 is not a token id"),
    ([1, 2, 3], {**GREEDY, "temperature": math.nan}, "temperature must be"),
]


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    topo = make_topology(policy="homogeneous-pd", pd_roles=("mixed",), prfaas_workers=0)
    dep = start(topo, Path(tmp_path_factory.mktemp("bad-requests")))
    try:
        yield dep
    finally:
        dep.stop()


def _sampling(fields: dict) -> common_pb2.SamplingParams:
    return common_pb2.SamplingParams(**fields)


async def _router_generate(stub: router_pb2_grpc.RouterStub, rid: str, prompt: list[int],
                           fields: dict) -> tuple[list[int], list[router_pb2.RouterGenerateEvent]]:  # fmt: skip
    """(tokens, the non-token events) of one Router.Generate."""
    request = router_pb2.RouterGenerateRequest(
        request_id=rid, prompt_ids=prompt, sampling=_sampling(fields)
    )
    tokens: list[int] = []
    others = []
    async for event in stub.Generate(request, timeout=120):
        if event.WhichOneof("event") == "tokens":
            tokens += list(event.tokens.ids)
        else:
            others.append(event)
    return tokens, others


async def _worker_refusals(dep: Deployment, address: str) -> list[tuple[str, str]]:
    """Send each bad request to the worker's entries directly; return (what the refusal must
    name, the refusal's text) for each."""
    creds = dep.secrets.credentials()  # the launcher's credentials, calling as the router
    refusals: list[tuple[str, str]] = []
    async with open_channel(address, identities.worker("pd-0"), creds) as channel:
        stub = worker_pb2_grpc.WorkerStub(channel)
        for i, (prompt, fields, named) in enumerate(BAD):
            gen = worker_pb2.GenerateRequest(
                request_id=f"bad-gen-{i}", prompt_ids=prompt, sampling=_sampling(fields)
            )
            (event,) = [e async for e in stub.Generate(gen, timeout=30)]
            assert event.error.code == "invalid_argument", event
            refusals.append((named, event.error.message))
            dest = worker_pb2.KvDestination(host="127.0.0.1", port=1, transfer_id=f"t{i}")
            prefill = worker_pb2.PrefillRequest(
                request_id=f"bad-prefill-{i}", prompt_ids=prompt, sampling=_sampling(fields),
                destination=dest,
            )  # fmt: skip
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.Prefill(prefill, timeout=30)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            refusals.append((named, info.value.details() or ""))
        prefix = [5] * (BLOCK - 1) + [70000]
        imp = worker_pb2.ImportPrefixRequest(
            import_id="bad-import", token_ids=prefix, block_size=BLOCK, transfer_id="t-import"
        )
        (event,) = [e async for e in stub.ImportPrefix(imp, timeout=30)]
        assert event.error.code == "invalid_argument", event
        refusals.append((f"token_ids[{BLOCK - 1}] = 70000 is not a token id", event.error.message))
    return refusals


async def _scenario(dep: Deployment) -> None:
    client = dep.secrets.credentials(identities.client("bad-input-test"))
    async with open_channel(dep.endpoints().router_grpc, identities.ROUTER, client) as channel:
        stub = router_pb2_grpc.RouterStub(channel)
        healthy = asyncio.create_task(
            _router_generate(stub, "healthy", [256, *range(1, 200)], GREEDY)
        )
        for i, (prompt, fields, named) in enumerate(BAD):
            tokens, (event,) = await _router_generate(stub, f"bad-{i}", prompt, fields)
            assert tokens == []
            assert event.error.code == "invalid_argument", event
            assert named in event.error.message
        pd0 = next(w for w in dep.topo.workers() if w.worker_id == "pd-0")
        for named, text in await _worker_refusals(dep, pd0.grpc):
            assert named in text, text
        tokens, (decision, finished) = await healthy
        assert decision.decision.route == "local"
        assert len(tokens) == HEALTHY_TOKENS
        assert finished.finished.reason == common_pb2.FINISH_REASON_LENGTH


def test_bad_requests_are_refused_at_every_entry_while_a_healthy_one_succeeds(
    deployment: Deployment,
) -> None:
    asyncio.run(_scenario(deployment))
    pd0 = next(w for w in deployment.topo.workers() if w.worker_id == "pd-0")
    proc = WorkerProc("pd-0", pd0.grpc, "pd", credentials=deployment.secrets.credentials())
    load = asyncio.run(wait_leak_free(proc))
    assert load.leak_report == ""
    # No step failed (engine/core.py and worker/compute.py log every failed step).
    log = (deployment.supervisor.log_dir / "pd-0.log").read_text()
    assert "engine step failed" not in log
    assert "failed; failing its" not in log
