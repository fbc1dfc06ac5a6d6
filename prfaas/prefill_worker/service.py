"""The `Worker` gRPC service as a PrfaaS prefill worker serves it: protos in, WorkerRuntime calls out.

Its role is fixed (`prfaas`: prefill only, see prfaas/roles.py). It serves Prefill, Abort, GetLoad,
StreamCacheEvents, ImportPrefix and ExportPrefix (all shared with the PD worker, CommonRpcs) and
answers the PD-worker RPCs, Generate and SetRole, with FAILED_PRECONDITION.
"""

from __future__ import annotations

from typing import NoReturn

import grpc

from prfaas._proto.prfaas.v1 import worker_pb2, worker_pb2_grpc
from prfaas.roles import Role
from prfaas.worker.runtime import WorkerRuntime
from prfaas.worker.shared_rpcs import CommonRpcs


class PrefillWorkerServicer(CommonRpcs, worker_pb2_grpc.WorkerServicer):
    role = Role.PRFAAS.value

    def __init__(self, runtime: WorkerRuntime) -> None:
        self.runtime = runtime

    async def _not_served(self, rpc: str, context: grpc.aio.ServicerContext) -> NoReturn:
        await context.abort(
            grpc.StatusCode.FAILED_PRECONDITION,
            f"{rpc} is served by PD workers only; {self.runtime.worker_id} is a PrfaaS prefill "
            f"worker (role {self.role}: Prefill, Abort, GetLoad, StreamCacheEvents, ImportPrefix, "
            "ExportPrefix)",
        )
        raise AssertionError("context.abort returned")  # it raises; for the type checker

    async def Generate(  # noqa: N802 (gRPC method name)
        self, request: worker_pb2.GenerateRequest, context: grpc.aio.ServicerContext
    ) -> None:
        # A coroutine, not an async generator: gRPC ends the stream with the abort status.
        await self._not_served("Generate", context)

    async def PlannerLease(  # noqa: N802
        self, request: worker_pb2.PlannerLeaseRequest, context: grpc.aio.ServicerContext
    ) -> worker_pb2.PlannerLeaseResponse:
        await self._not_served("PlannerLease", context)

    async def SetRole(  # noqa: N802
        self, request: worker_pb2.SetRoleRequest, context: grpc.aio.ServicerContext
    ) -> worker_pb2.SetRoleResponse:
        await self._not_served("SetRole", context)
