"""Bind a gRPC server port with the process's credentials.

mTLS when certificates are configured (`add_secure_port`), else plaintext with the token check in
the interceptor. A process with neither is open to anyone who can reach the port, so it binds
loopback only unless the operator says `--insecure` (a trusted network, e.g. a private Docker
network); even then other local users of the host can call it (see docs/security.md).
"""

from __future__ import annotations

import ipaddress
import logging

import grpc

from prfaas.security.credentials import GrpcCredentials

log = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind_grpc(
    server: grpc.aio.Server,
    address: str,
    credentials: GrpcCredentials | None,
    *,
    insecure: bool = False,
) -> int:
    """Add the port for `address` ("host:port") to `server`; returns the bound port.
    Raises SystemExit when it cannot bind or may not bind without credentials."""
    host = address.rsplit(":", 1)[0]
    if credentials is not None and credentials.tls is not None:
        port = server.add_secure_port(address, credentials.server_credentials())
    else:
        if credentials is None and not is_loopback(host):
            if not insecure:
                raise SystemExit(
                    f"refusing to serve gRPC on {address} without credentials: give "
                    "--auth-token-file or --tls-cert/--tls-key/--tls-ca, bind 127.0.0.1, "
                    "or pass --insecure to accept unauthenticated calls from the network"
                )
            log.warning("gRPC on %s accepts unauthenticated calls (--insecure)", address)
        elif credentials is not None and not is_loopback(host):
            log.warning("gRPC on %s: token auth without TLS; the token crosses the network "
                        "in clear (configure --tls-* across untrusted networks)", address)  # fmt: skip
        port = server.add_insecure_port(address)
    if port == 0:
        raise SystemExit(f"cannot bind gRPC port {address}")
    return port
