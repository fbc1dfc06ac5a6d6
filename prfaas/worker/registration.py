"""A worker joins its routers by itself: `RegisterWorker` with every router replica, repeated.

`--router` names one or more router gRPC addresses (comma-separated). Each round, every name is
resolved afresh to all its addresses — a Kubernetes headless Service resolves to one address per
router pod — and the worker registers with each. Repeating every `--register-interval-s` is the
keepalive: a router that restarted (empty registry) or a replica that was added learns the worker
within one interval, and a repeat costs the router nothing (same addresses: same handle). The
router then health-checks and polls the worker itself; on drain the worker stops registering and
reports `draining` in its load, and the routers forget it once it stops serving.

The request is built by a callable each round, so a role changed by the router's long-term planner
(`SetRole`) is what the worker announces next, not the role it started with. Owned by
`serve_worker`; runs on the worker's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
from collections.abc import Callable

import grpc

from prfaas._proto.prfaas.v1 import router_pb2, router_pb2_grpc
from prfaas.security import channels, identities

log = logging.getLogger(__name__)

RPC_TIMEOUT_S = 2.0


def _split_host_port(address: str) -> tuple[str, int]:
    host, _, port = address.strip().rpartition(":")
    return host.strip("[]"), int(port)


def _join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def resolve_routers(spec: str) -> list[str]:
    """Every router address `spec` names now: literals as given, names expanded to all their
    IPv4 addresses (IPv6 only where a name has no IPv4 one), in a stable order."""
    out: list[str] = []
    loop = asyncio.get_running_loop()
    for entry in filter(None, (e.strip() for e in spec.split(","))):
        host, port = _split_host_port(entry)
        try:
            ipaddress.ip_address(host)
            found = [host]
        except ValueError:
            try:
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except OSError as exc:
                log.info("router name %s does not resolve yet: %s", host, exc)
                continue
            v4 = sorted({str(i[4][0]) for i in infos if i[0] == socket.AF_INET})
            found = v4 or sorted({str(i[4][0]) for i in infos})
        out.extend(a for a in (_join_host_port(h, port) for h in found) if a not in out)
    return out


class RouterRegistration:
    """Registers with every router `spec` names, every `interval_s`, until `close()`."""

    def __init__(
        self,
        spec: str,
        make_request: Callable[[], router_pb2.RegisterWorkerRequest],
        interval_s: float = 2.0,
    ) -> None:
        self.spec = spec
        self.make_request = make_request
        self.interval_s = interval_s
        self.accepted_by: set[str] = set()
        """Router addresses whose last registration was accepted."""
        self.heartbeat_s = 0.0
        """The longest poll interval a router announced (how soon it notices a change here)."""
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="register")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()

    async def register_once(self) -> None:
        """One round: register with every router address resolved now."""
        addresses = await resolve_routers(self.spec)
        for gone in set(self._channels) - set(addresses):  # a replica that went away
            await self._channels.pop(gone).close()
            self.accepted_by.discard(gone)
        request = self.make_request()
        await asyncio.gather(*(self._register(address, request) for address in addresses))

    async def _register(self, address: str, request: router_pb2.RegisterWorkerRequest) -> None:
        channel = self._channels.get(address)
        if channel is None:
            channel = self._channels[address] = channels.open_channel(address, identities.ROUTER)
        try:
            reply = await router_pb2_grpc.RouterStub(channel).RegisterWorker(
                request, timeout=RPC_TIMEOUT_S
            )
        except grpc.aio.AioRpcError as exc:
            lost = address in self.accepted_by
            log.log(logging.WARNING if lost else logging.DEBUG, "router %s not reachable (%s); "
                    "retrying every %.1f s", address, exc.code().name, self.interval_s)  # fmt: skip
            self.accepted_by.discard(address)
            return
        if not reply.accepted:
            log.warning("router %s refused registration of %s", address, request.worker_id)
            self.accepted_by.discard(address)
            return
        if address not in self.accepted_by:
            log.info("registered %s with router %s", request.worker_id, address)
        self.accepted_by.add(address)
        self.heartbeat_s = max(self.heartbeat_s, reply.heartbeat_seconds)

    async def _run(self) -> None:
        while True:
            try:
                await self.register_once()
            except Exception:  # a bad address must not end the keepalive for the others
                log.exception("registration round failed")
            await asyncio.sleep(self.interval_s)
