"""One `Worker` gRPC service, gated by role: a PrfaaS prefill worker answers the PD-worker RPCs
(Generate, SetRole) with FAILED_PRECONDITION and a message that says why."""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import grpc
import pytest

from prfaas._proto.prfaas.v1 import worker_pb2, worker_pb2_grpc
from prfaas.prefill_worker.service import PrefillWorkerServicer


@pytest.fixture
async def prefill_stub() -> AsyncIterator[worker_pb2_grpc.WorkerStub]:
    runtime: Any = SimpleNamespace(worker_id="prfaas-7")  # the refusals read nothing else
    server = grpc.aio.server()
    worker_pb2_grpc.add_WorkerServicer_to_server(PrefillWorkerServicer(runtime), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield worker_pb2_grpc.WorkerStub(channel)
    finally:
        await server.stop(0)


async def test_generate_on_a_prefill_worker_is_a_failed_precondition(
    prefill_stub: worker_pb2_grpc.WorkerStub,
) -> None:
    call = prefill_stub.Generate(worker_pb2.GenerateRequest(request_id="r", prompt_ids=[1, 2]))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        async for _ in call:
            pass
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "Generate is served by PD workers only" in (err.value.details() or "")
    assert "prfaas-7" in (err.value.details() or "")


async def test_set_role_on_a_prefill_worker_is_a_failed_precondition(
    prefill_stub: worker_pb2_grpc.WorkerStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await prefill_stub.SetRole(worker_pb2.SetRoleRequest(role="decode"))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "SetRole is served by PD workers only" in (err.value.details() or "")
    assert "role prfaas" in (err.value.details() or "")


async def test_the_planner_lease_is_not_arbitrated_by_a_prefill_worker(
    prefill_stub: worker_pb2_grpc.WorkerStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await prefill_stub.PlannerLease(worker_pb2.PlannerLeaseRequest(holder="r", ttl_s=9))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "PlannerLease is served by PD workers only" in (err.value.details() or "")
