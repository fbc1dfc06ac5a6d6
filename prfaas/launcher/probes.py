"""Readiness probes and free ports: what the launcher, benchmarks and tests poll before use."""

from __future__ import annotations

import socket
import ssl
import urllib.request
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import grpc


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the kernel's choice; racy only in theory)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
