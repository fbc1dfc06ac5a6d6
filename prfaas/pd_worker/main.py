"""`prfaas pd-worker`: a local PD-cluster worker (mixed, prefill or decode role)."""

from __future__ import annotations

import argparse

from prfaas._proto.prfaas.v1 import worker_pb2_grpc
from prfaas.log_setup import configure_logging
from prfaas.pd_worker.service import PDWorkerServicer
from prfaas.worker.options import (
    PDWorkerOptions,
    add_worker_arguments,
    options_from_args,
    worker_security,
)
from prfaas.worker.runtime import WorkerRuntime
from prfaas.worker.server import run_async, serve_worker


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_worker_arguments(parser, PDWorkerOptions)


def run(args: argparse.Namespace) -> int:
    configure_logging(args)
    options = options_from_args(PDWorkerOptions, args)
    security = worker_security(args, options.worker_id)

    async def main() -> None:
        runtime = WorkerRuntime(options, security, receives_kv=True)
        servicer = PDWorkerServicer(runtime, options.role)
        kv_address = options.kv_address
        await serve_worker(
            runtime,
            servicer,
            lambda server: worker_pb2_grpc.add_WorkerServicer_to_server(servicer, server),
            kind="pd",
            kv_address=kv_address,
            kv_link_address=options.kv_link_advertise or kv_address,
        )

    return run_async(main)
