"""`prfaas pd-worker`: a local PD-cluster worker (mixed, prefill or decode role)."""

from __future__ import annotations

import argparse

from prfaas._proto.prfaas.v1 import worker_pb2_grpc
from prfaas.log_setup import configure_logging
from prfaas.pd_worker.service import PDWorkerServicer
from prfaas.roles import PD_ROLES
from prfaas.worker.options import add_common_arguments
from prfaas.worker.runtime import WorkerRuntime
from prfaas.worker.server import run_async, serve_worker


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser, default_port=50200)
    parser.add_argument("--role", choices=PD_ROLES, default="mixed")
    parser.add_argument("--kv-port", type=int, default=50300, help="KV receiver TCP port")
    parser.add_argument(
        "--kv-advertise", default="", help="KV address others should use (default host:kv-port)"
    )


def run(args: argparse.Namespace) -> int:
    configure_logging(args)

    async def main() -> None:
        runtime = WorkerRuntime(args, receives_kv=True)
        servicer = PDWorkerServicer(runtime, args.role)
        kv_address = args.kv_advertise or f"{args.host}:{args.kv_port}"
        await serve_worker(
            runtime,
            servicer,
            lambda server: worker_pb2_grpc.add_WorkerServicer_to_server(servicer, server),
            kind="pd",
            kv_address=kv_address,
            kv_link_address=args.kv_link_advertise or kv_address,
        )

    return run_async(main)
