"""Readiness of a gRPC server that requires mutual TLS (the launcher's plain probe cannot reach
it): the standard health check over a secure channel with the launcher's credentials."""

from __future__ import annotations

import grpc

from prfaas.launcher.probes import health_serving
from prfaas.security import identities
from prfaas.security.credentials import GrpcCredentials


def grpc_ready_tls(address: str, server_identity: str, credentials: GrpcCredentials) -> bool:
    options = [("grpc.ssl_target_name_override", identities.server_name(server_identity))]
    return health_serving(
        grpc.secure_channel(address, credentials.channel_credentials(), options=options)
    )
