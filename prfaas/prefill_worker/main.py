"""`prfaas prefill-worker`: a PrfaaS-cluster prefill worker process.

Lifecycle of a request here: Prefill RPC -> prefill_only request on the engine thread -> each
finished layer streamed over TCP to the named PD worker -> first token in the transfer trailer ->
PrefillResult once the receiver acknowledged everything -> cache released (prefix blocks stay in
this worker's prefix cache for later requests).
"""

from __future__ import annotations

import argparse

from prfaas._proto.prfaas.v1 import worker_pb2_grpc
from prfaas.log_setup import configure_logging
from prfaas.prefill_worker.service import PrefillWorkerServicer
from prfaas.worker.options import (
    PrefillWorkerOptions,
    add_worker_arguments,
    options_from_args,
    worker_security,
)
from prfaas.worker.runtime import WorkerRuntime
from prfaas.worker.server import run_async, serve_worker


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_worker_arguments(parser, PrefillWorkerOptions)


def run(args: argparse.Namespace) -> int:
    configure_logging(args)
    options = options_from_args(PrefillWorkerOptions, args)
    security = worker_security(args, options.worker_id)

    async def main() -> None:
        # A KV receiver only to import cached prefixes (ImportPrefix); prefills never receive.
        runtime = WorkerRuntime(options, security, receives_kv=options.kv_port > 0)
        servicer = PrefillWorkerServicer(runtime)
        await serve_worker(
            runtime,
            servicer,
            lambda server: worker_pb2_grpc.add_WorkerServicer_to_server(servicer, server),
            kind="prefill",
            kv_address=options.kv_address if options.kv_port else "",
        )

    return run_async(main)
