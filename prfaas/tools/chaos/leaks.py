"""Ask every worker what it still holds (GetLoad's `leak_report`, `num_live_requests`)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc

from prfaas._proto.prfaas.v1 import worker_pb2, worker_pb2_grpc
from prfaas.security import identities
from prfaas.security.channels import open_channel
from prfaas.security.credentials import GrpcCredentials
from prfaas.topology import Topology


async def _leaks_of(
    address: str, worker_id: str, credentials: GrpcCredentials | None, timeout_s: float
) -> dict[str, Any]:
    """Poll until the worker holds nothing or `timeout_s` passes; the last answer (or error)."""
    deadline = time.monotonic() + timeout_s
    last: dict[str, Any] = {}
    async with open_channel(address, identities.worker(worker_id), credentials) as channel:
        stub = worker_pb2_grpc.WorkerStub(channel)
        while True:
            try:
                load = await stub.GetLoad(worker_pb2.LoadRequest(), timeout=10)
                last = {
                    "leak_report": load.leak_report,
                    "num_live_requests": load.num_live_requests,
                    "num_open_transfers": load.num_open_transfers,
                }
                if not load.leak_report and not load.num_live_requests:
                    return last
            except grpc.RpcError as exc:
                last = {
                    "leak_report": f"GetLoad failed: {exc.code().name}",
                    "num_live_requests": -1,
                }
            if time.monotonic() > deadline:
                return last
            await asyncio.sleep(0.5)


async def leak_reports(
    topo: Topology, credentials: GrpcCredentials | None, timeout_s: float = 30.0
) -> dict[str, dict[str, Any]]:
    """Worker id -> its final leak state, all workers polled together; `credentials` are the
    router's (GetLoad is a router-only RPC: the deployment's `secrets.credentials()`)."""
    workers = topo.workers()
    answers = await asyncio.gather(
        *(_leaks_of(w.grpc, w.worker_id, credentials, timeout_s) for w in workers)
    )
    return {w.worker_id: a for w, a in zip(workers, answers, strict=True)}
