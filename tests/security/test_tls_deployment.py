"""`prfaas up --tls`-style deployment: mutual TLS on every gRPC channel and on the KV channel, a
development CA made by the launcher. Legitimate traffic flows; certificates from another CA,
expired ones and ones naming the wrong identity are refused, and nothing changes.
"""

from __future__ import annotations

import asyncio
import datetime
import ssl
from collections.abc import Iterator

import grpc
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from prfaas.launcher.deployment import Deployment
from prfaas.security import certs, identities
from prfaas.security.credentials import GrpcCredentials, TlsMaterial
from prfaas.topology import DEFAULT_TOPOLOGY
from tests.e2e.deployments import make_topology
from tests.security.attacks import ConnectionCounter, register_as, worker_control

DENIED = grpc.StatusCode.PERMISSION_DENIED
REFUSED_HANDSHAKE = grpc.StatusCode.UNAVAILABLE


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    d = tmp_path_factory.mktemp("tls")
    dep = Deployment(make_topology(), DEFAULT_TOPOLOGY, d / "logs", tls=True)
    dep.start()
    try:
        yield dep
    finally:
        dep.stop()


def deployment_ca(dep: Deployment) -> certs.Authority:
    tls_dir = dep.secrets.tls_dir
    assert tls_dir is not None
    key = serialization.load_pem_private_key((tls_dir / "ca.key").read_bytes(), None)
    cert = x509.load_pem_x509_certificate((tls_dir / "ca.crt").read_bytes())
    return certs.Authority(key, cert)  # type: ignore[arg-type]


def as_identity(
    ca: certs.Authority, trust: bytes, identity: str, **validity: object
) -> GrpcCredentials:
    """Credentials for `identity` issued by `ca`, trusting `trust` for the server."""
    cert, key = certs.issue(ca, identity, **validity)  # type: ignore[arg-type]
    return GrpcCredentials(identity, tls=TlsMaterial(cert, key, trust))


def pd1(dep: Deployment) -> str:
    return next(w.grpc for w in dep.topo.workers() if w.worker_id == "pd-1")


def completion_ok(dep: Deployment) -> bool:
    body = {"model": "prfaas-tiny", "prompt": "The quick brown fox " * 30, "max_tokens": 4,
            "temperature": 0, "ignore_eos": True}  # fmt: skip
    ca = ssl.create_default_context(cafile=str(dep.secrets.ca_file))  # HTTPS under --tls
    reply = httpx.post(dep.endpoints().http + "/completions", json=body, timeout=60, verify=ca)
    return reply.status_code == 200 and reply.json()["usage"]["completion_tokens"] == 4


def test_legitimate_traffic_flows_over_mtls(deployment: Deployment) -> None:
    for _ in range(3):  # long prompts offload: PrfaaS -> PD-D KV over TLS too
        assert completion_ok(deployment)
    router = deployment.secrets.credentials()
    assert (
        asyncio.run(worker_control(pd1(deployment), "pd-1", router, "GetLoad"))
        == grpc.StatusCode.OK
    )


def test_certificate_from_another_ca_is_refused(deployment: Deployment) -> None:
    rogue = certs.new_authority("attacker CA")
    trust = deployment_ca(deployment).pem  # the attacker trusts the real server; it is not trusted
    creds = as_identity(rogue, trust, identities.ROUTER)
    for rpc in ("SetRole", "Abort", "ImportPrefix"):
        assert asyncio.run(worker_control(pd1(deployment), "pd-1", creds, rpc)) == REFUSED_HANDSHAKE
    assert completion_ok(deployment)


def test_expired_certificate_is_refused(deployment: Deployment) -> None:
    now = datetime.datetime.now(datetime.UTC)
    ca = deployment_ca(deployment)
    creds = as_identity(ca, ca.pem, identities.ROUTER, not_before=now - datetime.timedelta(days=2),
                        not_after=now - datetime.timedelta(days=1))  # fmt: skip
    assert (
        asyncio.run(worker_control(pd1(deployment), "pd-1", creds, "SetRole")) == REFUSED_HANDSHAKE
    )
    assert completion_ok(deployment)


def test_wrong_identity_is_refused(deployment: Deployment) -> None:
    ca = deployment_ca(deployment)
    peer = as_identity(ca, ca.pem, identities.worker("pd-0"))  # a valid worker, not the router
    for rpc in ("SetRole", "Abort", "ImportPrefix", "GetLoad"):
        assert asyncio.run(worker_control(pd1(deployment), "pd-1", peer, rpc)) == DENIED
    fake = ConnectionCounter()
    try:
        router = deployment.endpoints().router_grpc
        assert asyncio.run(register_as(router, peer, "pd-1", fake.address)) == DENIED
        client = as_identity(ca, ca.pem, identities.client("tool"))
        assert asyncio.run(register_as(router, client, "pd-1", fake.address)) == DENIED
        assert completion_ok(deployment)
        assert fake.accepted == 0
    finally:
        fake.close()


def test_client_checks_the_server_identity(deployment: Deployment) -> None:
    """The router's channel to pd-1 accepts only pd-1's certificate: pd-0's address is refused."""
    router = deployment.secrets.credentials()
    pd0 = next(w.grpc for w in deployment.topo.workers() if w.worker_id == "pd-0")
    assert asyncio.run(worker_control(pd0, "pd-1", router, "GetLoad")) == REFUSED_HANDSHAKE


def test_no_plaintext_or_token_on_a_tls_port(deployment: Deployment) -> None:
    assert (
        asyncio.run(worker_control(pd1(deployment), "pd-1", None, "SetRole")) == REFUSED_HANDSHAKE
    )
    token = GrpcCredentials(identities.ROUTER, token=b"x")
    assert (
        asyncio.run(worker_control(pd1(deployment), "pd-1", token, "SetRole")) == REFUSED_HANDSHAKE
    )
