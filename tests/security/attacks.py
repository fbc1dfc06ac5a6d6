"""The control-plane attacks of issue 11, as an outsider would run them against real processes.

Each returns the gRPC status code the target answered (OK when the attack got through), so tests
assert the refusal and then check that nothing changed for legitimate users.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from prfaas._proto.prfaas.v1 import router_pb2, router_pb2_grpc, worker_pb2, worker_pb2_grpc
from prfaas.security import identities
from prfaas.security.channels import open_channel
from prfaas.security.credentials import API_KEY_HEADER, GrpcCredentials


async def _code(call: Callable[[], Awaitable[Any]]) -> grpc.StatusCode:
    try:
        await call()
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def _channel(address: str, server: str, creds: GrpcCredentials | None) -> grpc.aio.Channel:
    # Explicit plain channel when `creds` is None (open_channel would use process credentials).
    return open_channel(address, server, creds) if creds else grpc.aio.insecure_channel(address)


async def register_as(
    router: str, creds: GrpcCredentials | None, worker_id: str, grpc_address: str
) -> grpc.StatusCode:
    """Router.RegisterWorker for `worker_id`, pointing at the attacker's `grpc_address`."""
    request = router_pb2.RegisterWorkerRequest(
        worker_id=worker_id, kind="pd", cluster="pd", grpc_address=grpc_address,
        kv_address="127.0.0.1:1", role="decode",
    )  # fmt: skip
    async with _channel(router, identities.ROUTER, creds) as ch:
        return await _code(
            lambda: router_pb2_grpc.RouterStub(ch).RegisterWorker(request, timeout=5)
        )


async def worker_control(
    address: str, worker_id: str, creds: GrpcCredentials | None, rpc: str
) -> grpc.StatusCode:
    """One control RPC on a PD worker: "SetRole", "PlannerLease" (grab the role planner's
    leadership), "Abort", "ImportPrefix" or "GetLoad"."""
    async with _channel(address, identities.worker(worker_id), creds) as ch:
        stub = worker_pb2_grpc.WorkerStub(ch)
        if rpc == "SetRole":
            return await _code(
                lambda: stub.SetRole(worker_pb2.SetRoleRequest(role="prefill"), timeout=5)
            )
        if rpc == "PlannerLease":
            grab = worker_pb2.PlannerLeaseRequest(holder="attacker", ttl_s=3600)
            return await _code(lambda: stub.PlannerLease(grab, timeout=5))
        if rpc == "Abort":
            return await _code(
                lambda: stub.Abort(worker_pb2.AbortRequest(request_id="victim"), timeout=5)
            )
        if rpc == "GetLoad":
            return await _code(lambda: stub.GetLoad(worker_pb2.LoadRequest(), timeout=5))
        assert rpc == "ImportPrefix"
        request = worker_pb2.ImportPrefixRequest(
            import_id="fill", token_ids=[7] * 64, block_size=64, transfer_id="t", sender_id="x"
        )

        async def drain() -> None:
            async for _ in stub.ImportPrefix(request, timeout=5):
                pass

        return await _code(drain)


async def router_generate(
    router: str, creds: GrpcCredentials | None, api_key: str | None, max_tokens: int = 4
) -> tuple[grpc.StatusCode, int]:
    """Router.Generate; returns (status, tokens received)."""
    request = router_pb2.RouterGenerateRequest(request_id="g", prompt_ids=[1, 72, 105])
    request.sampling.max_tokens = max_tokens
    request.sampling.ignore_eos = True
    metadata = ((API_KEY_HEADER, api_key),) if api_key else ()
    tokens = 0
    async with _channel(router, identities.ROUTER, creds) as ch:

        async def run() -> None:
            nonlocal tokens
            stub = router_pb2_grpc.RouterStub(ch)
            async for ev in stub.Generate(request, metadata=metadata, timeout=60):
                if ev.WhichOneof("event") == "tokens":
                    tokens += len(ev.tokens.ids)
                elif ev.WhichOneof("event") == "error":
                    raise AssertionError(f"{ev.error.code}: {ev.error.message}")

        return await _code(run), tokens


class ConnectionCounter:
    """A TCP listener standing in for the attacker's fake worker: counts who connects to it."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()
