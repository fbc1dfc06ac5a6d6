"""Which identity may call which RPC (the authorization half of the interceptor).

- health checks: anyone (launchers, load balancers, Kubernetes probes);
- every worker RPC (Prefill, Generate, Abort, SetRole, GetLoad, StreamCacheEvents, ImportPrefix,
  ExportPrefix): the router only — these move requests, roles and caches;
- `Router.RegisterWorker`: a worker identity, and only for its own worker id;
- `Router.Generate`: any authenticated identity (plus an API key when the router has any);
- anything else: nobody.
"""

from __future__ import annotations

from typing import Any

from prfaas.security import identities

HEALTH_PREFIX = "/grpc.health.v1.Health/"
ROUTER_GENERATE = "/prfaas.v1.Router/Generate"
ROUTER_REGISTER = "/prfaas.v1.Router/RegisterWorker"
WORKER_PREFIX = "/prfaas.v1.Worker/"


def is_open(method: str) -> bool:
    """Methods served without any authentication."""
    return method.startswith(HEALTH_PREFIX)


def refusal(method: str, principal: str, request: Any) -> str | None:
    """Why `principal` may not call `method` with `request`, or None when it may."""
    if method.startswith(WORKER_PREFIX):
        return None if principal == identities.ROUTER else "worker RPCs are for the router only"
    if method == ROUTER_REGISTER:
        claimed = getattr(request, "worker_id", None)
        own = identities.worker_id_of(principal)
        if own is None:
            return "only a worker identity may register"
        return None if own == claimed else f"identity of worker {own} cannot register {claimed!r}"
    if method == ROUTER_GENERATE:
        return None
    return "method not allowed"
