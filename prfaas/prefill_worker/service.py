"""gRPC `PrefillWorker` servicer: protos in, WorkerRuntime calls out (see prfaas/worker)."""

from __future__ import annotations

from prfaas._proto.prfaas.v1 import worker_pb2_grpc
from prfaas.worker.common_rpcs import CommonRpcs
from prfaas.worker.runtime import WorkerRuntime


class PrefillWorkerServicer(CommonRpcs, worker_pb2_grpc.PrefillWorkerServicer):
    """Prefill, Abort, GetLoad and StreamCacheEvents, all shared with the PD worker (CommonRpcs)."""

    role = "prfaas"

    def __init__(self, runtime: WorkerRuntime) -> None:
        self.runtime = runtime
