"""gRPC `PrefillWorker` servicer: protos in, WorkerRuntime calls out (see prfaas/worker)."""

from __future__ import annotations

from prfaas._proto.prfaas.v1 import worker_pb2_grpc
from prfaas.roles import Role
from prfaas.worker.runtime import WorkerRuntime
from prfaas.worker.shared_rpcs import CommonRpcs


class PrefillWorkerServicer(CommonRpcs, worker_pb2_grpc.PrefillWorkerServicer):
    """Prefill, Abort, GetLoad and StreamCacheEvents, all shared with the PD worker (CommonRpcs)."""

    role = Role.PRFAAS.value

    def __init__(self, runtime: WorkerRuntime) -> None:
        self.runtime = runtime
