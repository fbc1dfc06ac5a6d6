"""Server side: authenticate and authorize every RPC before its handler runs.

Authentication gives a principal (an identity string):
- mTLS: the client certificate's SPIFFE ID (URI SAN), else its subject CN, from
  `context.auth_context()` (the TLS handshake already verified the chain and the dates);
- token: `authorization: Bearer <token>` equal to the deployment token (`hmac.compare_digest`),
  and the identity claimed in `x-prfaas-identity`;
- open (no credentials configured, loopback only): no principal and no authorization.
Authorization is `authz.refusal`. Methods in `api_key_methods` also need a current API key in
`x-api-key` when the server has keys (in every mode). Refusals abort with UNAUTHENTICATED or
PERMISSION_DENIED and are logged with the peer address. The admitted principal is visible to the
handler through `current_principal()` (e.g. `RegisterWorker` records who registered a worker).
"""

from __future__ import annotations

import contextvars
import hmac
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from prfaas.security import authz
from prfaas.security.api_keys import ApiKeys
from prfaas.security.credentials import (
    API_KEY_HEADER,
    IDENTITY_HEADER,
    TOKEN_HEADER,
    GrpcCredentials,
)
from prfaas.security.identities import PREFIX

log = logging.getLogger(__name__)

_principal: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "prfaas_principal", default=None
)


def current_principal() -> str | None:
    """The identity the interceptor admitted for the RPC being handled (None when open)."""
    return _principal.get()


class Refused(Exception):
    def __init__(self, code: grpc.StatusCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code


def _metadata(context: grpc.aio.ServicerContext) -> dict[str, str]:
    return {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}


def certificate_identity(auth_context: dict[str, list[bytes]]) -> str | None:
    """The caller's identity from a verified peer certificate (SPIFFE ID first, then CN)."""
    for key in ("peer_spiffe_id", "peer_uri", "x509_common_name"):
        for value in auth_context.get(key, ()):
            text = value.decode(errors="replace")
            if key != "peer_uri" or text.startswith(PREFIX):
                return text
    return None


class AuthInterceptor(grpc.aio.ServerInterceptor):
    def __init__(
        self,
        credentials: GrpcCredentials | None,
        api_keys: ApiKeys | None = None,
        api_key_methods: frozenset[str] = frozenset({authz.ROUTER_GENERATE}),
    ) -> None:
        self.credentials = credentials
        self.api_keys = api_keys
        self.api_key_methods = api_key_methods

    def _authenticate(self, context: grpc.aio.ServicerContext) -> str | None:
        creds = self.credentials
        if creds is None:
            return None
        if creds.tls is not None:
            identity = certificate_identity(context.auth_context())
            if identity is None:
                raise Refused(grpc.StatusCode.UNAUTHENTICATED, "no client certificate identity")
            return identity
        assert creds.token is not None
        meta = _metadata(context)
        scheme, _, token = meta.get(TOKEN_HEADER, "").partition(" ")
        valid = scheme.lower() == "bearer" and hmac.compare_digest(token.encode(), creds.token)
        if not valid:
            raise Refused(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong token")
        claimed = meta.get(IDENTITY_HEADER, "")
        if not claimed.startswith(PREFIX):
            raise Refused(grpc.StatusCode.UNAUTHENTICATED, "no identity claimed")
        return claimed

    def admit(self, method: str, request: Any, context: grpc.aio.ServicerContext) -> str | None:
        """The admitted principal; raises `Refused`."""
        principal = self._authenticate(context)
        if self.credentials is not None:
            assert principal is not None
            reason = authz.refusal(method, principal, request)
            if reason is not None:
                raise Refused(grpc.StatusCode.PERMISSION_DENIED, reason)
        keys = self.api_keys if method in self.api_key_methods else None
        if keys is not None and not keys.accepts(_metadata(context).get(API_KEY_HEADER, "")):
            raise Refused(grpc.StatusCode.UNAUTHENTICATED, "invalid or missing API key")
        return principal

    async def _check(self, method: str, request: Any, context: grpc.aio.ServicerContext) -> None:
        try:
            _principal.set(self.admit(method, request, context))
        except Refused as exc:
            log.warning("refused %s from %s (%s): %s", method, context.peer(),
                        _metadata(context).get(IDENTITY_HEADER, "-"), exc)  # fmt: skip
            await context.abort(exc.code, f"{method}: {exc}")

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        method = details.method
        if handler is None or authz.is_open(method):
            return handler
        if self.credentials is None and (
            self.api_keys is None or method not in self.api_key_methods
        ):
            return handler
        return _wrap(handler, lambda request, context: self._check(method, request, context))


def _wrap(handler: grpc.RpcMethodHandler, check: Callable[[Any, Any], Awaitable[None]]) -> Any:
    """`handler` with `check(request, context)` run first (request None for streamed requests)."""
    kw = {"request_deserializer": handler.request_deserializer,
          "response_serializer": handler.response_serializer}  # fmt: skip
    if handler.unary_unary is not None:
        inner_uu = handler.unary_unary

        async def unary_unary(request: Any, context: Any) -> Any:
            await check(request, context)
            return await inner_uu(request, context)

        return grpc.unary_unary_rpc_method_handler(unary_unary, **kw)
    if handler.stream_unary is not None:
        inner_su = handler.stream_unary

        async def stream_unary(requests: Any, context: Any) -> Any:
            await check(None, context)
            return await inner_su(requests, context)

        return grpc.stream_unary_rpc_method_handler(stream_unary, **kw)
    streaming_requests = handler.unary_stream is None
    inner = handler.stream_stream if streaming_requests else handler.unary_stream
    if not inspect.isasyncgenfunction(inner):
        # A handler that writes with `context.write` and returns.
        async def writer(request: Any, context: Any) -> Any:
            await check(None if streaming_requests else request, context)
            return await inner(request, context)

        behavior: Any = writer
    else:

        async def generator(request: Any, context: Any) -> Any:
            await check(None if streaming_requests else request, context)
            async for item in inner(request, context):
                yield item

        behavior = generator
    if streaming_requests:
        return grpc.stream_stream_rpc_method_handler(behavior, **kw)
    return grpc.unary_stream_rpc_method_handler(behavior, **kw)
