"""Issue 11's attacks against a real `prfaas up`-style deployment in its default mode (a
per-deployment gRPC token handed to children by file, API keys from a file): each is refused,
nothing changes, and legitimate users are unaffected.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest

from prfaas.launcher.deployment import Deployment
from prfaas.security import identities
from prfaas.security.credentials import GrpcCredentials
from prfaas.topology import DEFAULT_TOPOLOGY
from tests.e2e.deployments import make_topology
from tests.security.attacks import (
    ConnectionCounter,
    register_as,
    router_generate,
    worker_control,
)

KEYS = ["key-alice", "key-bob"]
DENIED = grpc.StatusCode.PERMISSION_DENIED
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    d = tmp_path_factory.mktemp("token")
    keys = d / "api-keys"
    keys.write_text("\n".join(KEYS) + "\n")
    os.chmod(keys, 0o600)
    dep = Deployment(make_topology(), DEFAULT_TOPOLOGY, d / "logs", api_key_file=keys)
    dep.start()
    try:
        yield dep
    finally:
        dep.stop()


def complete(dep: Deployment, key: str | None, max_tokens: int = 4) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    body = {"model": "prfaas-tiny", "prompt": "hello " * 20, "max_tokens": max_tokens,
            "temperature": 0, "ignore_eos": True}  # fmt: skip
    return httpx.post(dep.endpoints().http + "/completions", json=body, headers=headers, timeout=60)


def token_as(dep: Deployment, identity: str) -> GrpcCredentials:
    """The deployment's token claiming `identity` (an insider with the token, or a thief)."""
    return GrpcCredentials(identity, token=dep.secrets.token_file.read_bytes().strip())


def worker(dep: Deployment, worker_id: str) -> str:
    return next(w.grpc for w in dep.topo.workers() if w.worker_id == worker_id)


def test_secrets_are_private_files_not_environment(deployment: Deployment) -> None:
    assert os.stat(deployment.secrets.directory).st_mode & 0o077 == 0
    for f in (deployment.secrets.token_file, deployment.secrets.kv_secret_file):
        assert os.stat(f).st_mode & 0o077 == 0
    for group in deployment.specs():
        for spec in group:
            assert "PRFAAS_KV_SECRET" not in spec.env
            assert deployment.secrets.token_file.read_text().strip() not in " ".join(spec.argv)


def test_api_keys_gate_http(deployment: Deployment) -> None:
    assert complete(deployment, None).status_code == 401
    assert complete(deployment, "not-a-key").status_code == 401
    for key in KEYS:
        reply = complete(deployment, key)
        assert reply.status_code == 200, reply.text
        assert reply.json()["usage"]["completion_tokens"] == 4


def test_router_generate_needs_token_and_api_key(deployment: Deployment) -> None:
    router = deployment.endpoints().router_grpc
    client = token_as(deployment, identities.client("tester"))
    assert asyncio.run(router_generate(router, None, KEYS[0]))[0] == UNAUTHENTICATED
    assert asyncio.run(router_generate(router, client, None))[0] == UNAUTHENTICATED
    assert asyncio.run(router_generate(router, client, "stolen?"))[0] == UNAUTHENTICATED
    code, tokens = asyncio.run(router_generate(router, client, KEYS[1]))
    assert (code, tokens) == (grpc.StatusCode.OK, 4)


def test_fake_registration_of_an_existing_worker_is_refused(deployment: Deployment) -> None:
    router = deployment.endpoints().router_grpc
    fake = ConnectionCounter()
    try:
        # No token; the token claiming another worker; the token claiming the router.
        assert asyncio.run(register_as(router, None, "pd-1", fake.address)) == UNAUTHENTICATED
        other = token_as(deployment, identities.worker("pd-0"))
        assert asyncio.run(register_as(router, other, "pd-1", fake.address)) == DENIED
        router_claim = token_as(deployment, identities.ROUTER)
        assert asyncio.run(register_as(router, router_claim, "pd-1", fake.address)) == DENIED
        time.sleep(1.5)  # three heartbeat periods: a registered fake would be polled by now
        for _ in range(3):
            assert complete(deployment, KEYS[0]).status_code == 200
        assert fake.accepted == 0, "the router contacted the attacker's worker"
    finally:
        fake.close()


@pytest.mark.parametrize("rpc", ["SetRole", "PlannerLease", "Abort", "ImportPrefix", "GetLoad"])
def test_worker_control_rpcs_are_router_only(deployment: Deployment, rpc: str) -> None:
    address = worker(deployment, "pd-1")
    assert asyncio.run(worker_control(address, "pd-1", None, rpc)) == UNAUTHENTICATED
    wrong_token = GrpcCredentials(identities.ROUTER, token=b"guessed")
    assert asyncio.run(worker_control(address, "pd-1", wrong_token, rpc)) == UNAUTHENTICATED
    peer = token_as(deployment, identities.worker("pd-0"))
    assert asyncio.run(worker_control(address, "pd-1", peer, rpc)) == DENIED
    # Nothing changed: the decode worker keeps its role and the deployment stays ready.
    router = deployment.secrets.credentials()
    assert asyncio.run(worker_control(address, "pd-1", router, "GetLoad")) == grpc.StatusCode.OK
    ready = httpx.get(deployment.endpoints().http.removesuffix("/v1") + "/ready", timeout=10)
    assert ready.status_code == 200
    assert complete(deployment, KEYS[0]).status_code == 200


def test_refusals_are_logged_with_the_peer(deployment: Deployment) -> None:
    address = worker(deployment, "pd-1")
    asyncio.run(worker_control(address, "pd-1", None, "SetRole"))
    log = Path(deployment.supervisor.log_dir) / "pd-1.log"
    deadline = time.monotonic() + 5
    while "refused /prfaas.v1.Worker/SetRole from ipv4:127.0.0.1" not in log.read_text():
        assert time.monotonic() < deadline, log.read_text()[-2000:]
        time.sleep(0.2)
