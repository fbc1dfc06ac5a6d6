"""Readiness probes and free ports: what the launcher, benchmarks and tests poll before use."""

from __future__ import annotations

import random
import socket
import ssl
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import grpc


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now, chosen below the kernel's ephemeral range."""
    return free_port_range(1)


def free_port_range(width: int) -> int:
    """A base port such that [base, base + width) is free on 127.0.0.1 now, below the kernel's
    ephemeral range.

    Why not the kernel's choice (bind to port 0): that port lies in the ephemeral range, which
    every outgoing connection on the machine draws its local port from, so between this call and
    the child process binding it a gRPC or HTTP client elsewhere can take it (seen in CI as
    EADDRINUSE in a worker's KV receiver). Below the range only listeners bind. Ports handed out
    by this process are not handed out again."""
    low, _ = ephemeral_port_range()
    bases = range(_LOWEST_PORT, low - width)
    for _ in range(200 if len(bases) >= 1000 else 0):
        base = random.choice(bases)
        ports = range(base, base + width)
        if _handed_out.isdisjoint(ports) and all(_bindable(p) for p in ports):
            _handed_out.update(ports)
            return base
    for _ in range(200):  # no room below the range: near the kernel's choice
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = int(s.getsockname()[1])
        if base + width < 65536 and all(_bindable(p) for p in range(base, base + width)):
            return base
    raise RuntimeError(f"no {width} free consecutive ports on 127.0.0.1")


_LOWEST_PORT = 20000  # below this live well-known and registered services
_handed_out: set[int] = set()


def ephemeral_port_range() -> tuple[int, int]:
    """The kernel's range for the local ports of outgoing connections (Linux; else its default)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # the Linux default


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def http_ready(url: str, ca_file: str | None = None) -> bool:
    """True when GET `url` answers 200 (the router's /ready); an https `url` is verified against
    `ca_file` (the deployment CA) when given."""
    context = ssl.create_default_context(cafile=ca_file) if ca_file else None
    try:
        with urllib.request.urlopen(url, timeout=1.0, context=context) as reply:
            return reply.status == 200
    except OSError:
        return False


def grpc_ready(address: str) -> bool:
    """True when the standard grpc.health.v1 service at `address` reports SERVING."""
    import grpc

    return health_serving(grpc.insecure_channel(address))


def health_serving(channel: grpc.Channel) -> bool:
    """True when the health service behind `channel` reports SERVING; closes `channel`."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    try:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=1.0
        )
        return reply.status == health_pb2.HealthCheckResponse.SERVING
    except grpc.RpcError:
        return False
    finally:
        channel.close()
