"""`prfaas prefill-worker`: a PrfaaS-cluster prefill worker process.

Lifecycle of a request here: Prefill RPC -> prefill_only request on the engine thread -> each
finished layer streamed over TCP to the named PD worker -> first token in the transfer trailer ->
PrefillResult once the receiver acknowledged everything -> cache released (prefix blocks stay in
this worker's prefix cache for later requests).
"""

from __future__ import annotations

import argparse

from prfaas._proto.prfaas.v1 import worker_pb2_grpc
from prfaas.prefill_worker.service import PrefillWorkerServicer
from prfaas.worker.options import add_common_arguments
from prfaas.worker.runtime import WorkerRuntime
from prfaas.worker.server import run_async, serve_worker


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser, default_port=50100)


def run(args: argparse.Namespace) -> int:
    async def main() -> None:
        runtime = WorkerRuntime(args, receives_kv=False)
        servicer = PrefillWorkerServicer(runtime)
        await serve_worker(
            runtime,
            lambda server: worker_pb2_grpc.add_PrefillWorkerServicer_to_server(servicer, server),
            kind="prefill",
            role="prfaas",
        )

    return run_async(main)
