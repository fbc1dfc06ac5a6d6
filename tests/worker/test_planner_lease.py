"""The planner lease a PD worker arbitrates (prfaas/worker/planner_lease.py), on a fake clock."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import grpc
import pytest

from prfaas._proto.prfaas.v1 import worker_pb2, worker_pb2_grpc
from prfaas.pd_worker.service import PDWorkerServicer
from prfaas.worker.planner_lease import LeaseAnswer, PlannerLease


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_first_asker_holds_others_are_told_who_and_for_how_long() -> None:
    clock = Clock()
    lease = PlannerLease(clock)
    assert lease.request("a", 90) == LeaseAnswer(True, "a", 90)
    clock.now += 30
    assert lease.request("b", 90) == LeaseAnswer(False, "a", 60)
    # The holder renews: its lease runs 90 s from the renewal, and b is still refused.
    assert lease.request("a", 90) == LeaseAnswer(True, "a", 90)
    clock.now += 89
    assert lease.request("b", 90).granted is False


def test_an_expired_lease_goes_to_the_next_asker() -> None:
    clock = Clock()
    lease = PlannerLease(clock)
    lease.request("a", 10)
    clock.now += 10
    assert lease.request("b", 10) == LeaseAnswer(True, "b", 10)
    assert lease.request("a", 10) == LeaseAnswer(False, "b", 10)


def test_release_frees_only_the_holders_lease() -> None:
    clock = Clock()
    lease = PlannerLease(clock)
    lease.request("a", 60)
    assert lease.release("b") == LeaseAnswer(False, "a", 60)  # not b's to give up
    assert lease.request("b", 60).granted is False
    assert lease.release("a") == LeaseAnswer(False, "", 0.0)
    assert lease.request("b", 60) == LeaseAnswer(True, "b", 60)


@pytest.mark.parametrize(("holder", "ttl"), [("", 10.0), ("a", 0.0), ("a", float("nan"))])
def test_a_request_without_holder_or_positive_ttl_is_refused(holder: str, ttl: float) -> None:
    with pytest.raises(ValueError, match="holder and a positive ttl_s"):
        PlannerLease(Clock()).request(holder, ttl)


async def test_a_pd_worker_serves_the_lease_over_grpc() -> None:
    """The real PD servicer's RPC: grant, refuse another holder, release, invalid request."""
    runtime: Any = SimpleNamespace(worker_id="pd-0")  # the lease reads nothing of the runtime
    server = grpc.aio.server()
    worker_pb2_grpc.add_WorkerServicer_to_server(PDWorkerServicer(runtime, "decode"), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = worker_pb2_grpc.WorkerStub(channel)
            lease = worker_pb2.PlannerLeaseRequest
            first = await stub.PlannerLease(lease(holder="r1", ttl_s=30))
            assert first.granted and first.holder == "r1" and first.remaining_s == 30
            second = await stub.PlannerLease(lease(holder="r2", ttl_s=30))
            assert not second.granted and second.holder == "r1" and 0 < second.remaining_s <= 30
            await stub.PlannerLease(lease(holder="r1", release=True))
            assert (await stub.PlannerLease(lease(holder="r2", ttl_s=30))).granted
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.PlannerLease(lease(holder="r3", ttl_s=0))
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        await server.stop(0)
