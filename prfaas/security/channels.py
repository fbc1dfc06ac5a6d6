"""Client side: gRPC channels that present this process's credentials.

The process's own credentials are process-wide (one identity per process), set once at start by
its main (`configure`); code that opens channels (the router's registry, a worker registering)
calls `open_channel` with the identity of the server it means to reach. Tests and tools can pass
credentials explicitly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc

from prfaas.security import identities
from prfaas.security.credentials import GrpcCredentials

_process_credentials: GrpcCredentials | None = None


def configure(credentials: GrpcCredentials | None) -> None:
    """Set the credentials `open_channel` uses by default (None: plain, open channels)."""
    global _process_credentials
    _process_credentials = credentials


def process_credentials() -> GrpcCredentials | None:
    return _process_credentials


class _AttachMetadata:
    """Adds the token and claimed identity to every call (token mode)."""

    def __init__(self, pairs: Sequence[tuple[str, str]]) -> None:
        self._pairs = tuple(pairs)

    def _details(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        metadata = grpc.aio.Metadata(*(details.metadata or ()), *self._pairs)
        return grpc.aio.ClientCallDetails(
            details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
        )


# grpc.aio files each interceptor under the first call kind it implements, so one class per kind.
class _UnaryUnary(_AttachMetadata, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)


class _UnaryStream(_AttachMetadata, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)


class _StreamUnary(_AttachMetadata, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await continuation(self._details(details), requests)


class _StreamStream(_AttachMetadata, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await continuation(self._details(details), requests)


def token_interceptors(creds: GrpcCredentials) -> list[Any]:
    pairs = creds.call_metadata()
    return [cls(pairs) for cls in (_UnaryUnary, _UnaryStream, _StreamUnary, _StreamStream)]


def open_channel(
    address: str,
    server_identity: str,
    credentials: GrpcCredentials | None = None,
    options: Sequence[tuple[str, Any]] = (),
) -> grpc.aio.Channel:
    """A channel to the server `server_identity` at `address` with `credentials` (default: the
    process's). Under mTLS the server's certificate must name `server_identity`."""
    creds = credentials if credentials is not None else _process_credentials
    opts = list(options)
    if creds is None:
        return grpc.aio.insecure_channel(address, options=opts)
    if creds.tls is not None:
        opts.append(("grpc.ssl_target_name_override", identities.server_name(server_identity)))
        return grpc.aio.secure_channel(address, creds.channel_credentials(), options=opts)
    return grpc.aio.insecure_channel(address, options=opts, interceptors=token_interceptors(creds))


# gRPC's default reconnect backoff grows to 120 s: a worker restarted by the supervisor after a
# few failed polls would then wait minutes to be seen again. Heartbeats already pace the retries.
WORKER_CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.min_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 1000),
)


def open_worker_channel(address: str, worker_id: str) -> grpc.aio.Channel:
    """The router's channel to worker `worker_id` (used by the registry)."""
    if _process_credentials is None:
        # Open mode: any worker id is fine.
        return grpc.aio.insecure_channel(address, options=list(WORKER_CHANNEL_OPTIONS))
    return open_channel(address, identities.worker(worker_id), options=WORKER_CHANNEL_OPTIONS)
