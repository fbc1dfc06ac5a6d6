"""Process identities: SPIFFE-style URIs carried in certificates (URI SAN) or claimed with a token.

The router is `spiffe://prfaas/router`; worker `pd-0` is `spiffe://prfaas/worker/pd-0`; a tool or
user of the gRPC API is `spiffe://prfaas/client/<name>`. Each identity also implies a DNS name
(`router.prfaas`, `pd-0.worker.prfaas`) that its certificate carries and that clients verify
(`grpc.ssl_target_name_override`), so a channel to worker `pd-0` only accepts `pd-0`'s certificate.
"""

from __future__ import annotations

import re

TRUST_DOMAIN = "prfaas"
PREFIX = f"spiffe://{TRUST_DOMAIN}/"
ROUTER = f"{PREFIX}router"
WORKER_PREFIX = f"{PREFIX}worker/"
CLIENT_PREFIX = f"{PREFIX}client/"

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
"""Worker ids and client names usable inside a URI and as one DNS label."""


def _checked(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"{name!r} is not a valid identity name (letters, digits, '-', '_')")
    return name


def worker(worker_id: str) -> str:
    return WORKER_PREFIX + _checked(worker_id)


def client(name: str) -> str:
    return CLIENT_PREFIX + _checked(name)


def worker_id_of(identity: str | None) -> str | None:
    """The worker id an identity names, or None if it is not a worker identity."""
    if identity is None or not identity.startswith(WORKER_PREFIX):
        return None
    name = identity[len(WORKER_PREFIX) :]
    return name if _NAME.match(name) else None


def server_name(identity: str) -> str:
    """The DNS name a server with this identity presents (its certificate's DNS SAN)."""
    if identity == ROUTER:
        return f"router.{TRUST_DOMAIN}"
    worker_id = worker_id_of(identity)
    if worker_id is not None:
        return f"{worker_id}.worker.{TRUST_DOMAIN}"
    if identity.startswith(CLIENT_PREFIX):
        return f"{identity[len(CLIENT_PREFIX) :]}.client.{TRUST_DOMAIN}"
    raise ValueError(f"not a prfaas identity: {identity!r}")


def file_stem(identity: str) -> str:
    """`router`, `worker-pd-0`, `client-bench`: a file name for an identity's key and certificate."""
    return identity.removeprefix(PREFIX).replace("/", "-")
