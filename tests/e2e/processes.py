"""Start real worker processes for end-to-end tests and talk to them over gRPC."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from prfaas._proto.prfaas.v1 import common_pb2, worker_pb2, worker_pb2_grpc
from prfaas.launcher.probes import free_port, grpc_ready
from prfaas.launcher.supervisor import ProcessSpec, Supervisor
from prfaas.router.two_worker_handshake import TwoWorkerHandshake, first_event
from prfaas.security import identities
from prfaas.security.channels import open_channel
from prfaas.security.credentials import GrpcCredentials


@dataclass
class WorkerProc:
    worker_id: str
    grpc_address: str
    kind: str
    kv_port: int = 0
    credentials: GrpcCredentials | None = None
    """How to call it as the router (a deployment's `secrets.credentials()`); None: open."""


def start_worker(
    sup: Supervisor, kind: str, worker_id: str, extra: list[str], role: str = "mixed"
) -> WorkerProc:
    port = free_port()
    argv = [sys.executable, "-m", "prfaas.cli", f"{kind}-worker", "--worker-id", worker_id]
    argv += ["--grpc-port", str(port), *extra]
    kv_port = 0
    if kind == "pd":
        kv_port = free_port()
        argv += ["--role", role, "--kv-port", str(kv_port)]
    address = f"127.0.0.1:{port}"
    spec = ProcessSpec(
        worker_id, argv, env={"OMP_WAIT_POLICY": "PASSIVE"}, ready=lambda: grpc_ready(address)
    )
    sup.wait_ready(sup.start(spec), timeout_s=120)
    return WorkerProc(worker_id, address, kind, kv_port)


def supervisor(tmp_path: Path) -> Supervisor:
    return Supervisor(tmp_path / "logs")


def sampling(max_tokens: int) -> common_pb2.SamplingParams:
    return common_pb2.SamplingParams(max_tokens=max_tokens, ignore_eos=True)


async def generate_local(
    stub: worker_pb2_grpc.WorkerStub, prompt: list[int], n: int
) -> tuple[list[int], int]:
    tokens: list[int] = []
    request = worker_pb2.GenerateRequest(
        request_id=uuid.uuid4().hex, prompt_ids=prompt, sampling=sampling(n)
    )
    async for ev in stub.Generate(request, timeout=120):
        kind = ev.WhichOneof("event")
        if kind == "tokens":
            tokens += list(ev.tokens.ids)
        elif kind == "error":
            raise RuntimeError(f"{ev.error.code}: {ev.error.message}")
        elif kind == "finished":
            return tokens, ev.finished.usage.cached_tokens
    raise RuntimeError("stream ended without Finished")


async def generate_remote(
    decode: worker_pb2_grpc.WorkerStub,
    prefill: worker_pb2_grpc.WorkerStub,
    prefill_id: str,
    kv_port: int,
    prompt: list[int],
    n: int,
) -> tuple[list[int], worker_pb2.PrefillResult]:
    """The router's offload flow, by its own handshake: decode-only Generate and, at the same
    time, Prefill to the decode worker's KV port; Admitted first on the decode stream."""
    request = worker_pb2.GenerateRequest(
        request_id=uuid.uuid4().hex, prompt_ids=prompt, sampling=sampling(n)
    )
    handshake = TwoWorkerHandshake(decode, prefill, request, prefill_id, ("127.0.0.1", kv_port),
                                   kv_deadline_s=60, prefill_timeout_s=120,
                                   decode_timeout_s=120)  # fmt: skip
    first = await handshake.open(first_event)
    assert first.WhichOneof("event") == "admitted", first
    assert handshake.call is not None and handshake.prefill_call is not None
    result = handshake.prefill_call
    tokens: list[int] = []
    async for ev in handshake.call:
        kind = ev.WhichOneof("event")
        if kind == "tokens":
            tokens += list(ev.tokens.ids)
        elif kind == "error":
            result.cancel()
            raise RuntimeError(f"{ev.error.code}: {ev.error.message}")
        elif kind == "finished":
            break
    return tokens, await result


async def wait_leak_free(proc: WorkerProc, timeout_s: float = 20.0) -> worker_pb2.WorkerLoad:
    """Poll GetLoad until the worker reports nothing held; return the last load."""
    server = identities.worker(proc.worker_id)
    async with open_channel(proc.grpc_address, server, proc.credentials) as channel:
        stub = worker_pb2_grpc.WorkerStub(channel)
        deadline = time.monotonic() + timeout_s
        while True:
            load = await stub.GetLoad(worker_pb2.LoadRequest(), timeout=10)
            if not load.leak_report or time.monotonic() > deadline:
                return load
            await asyncio.sleep(0.2)
