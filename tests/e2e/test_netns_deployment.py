"""`prfaas up --netns`: two datacenters in network namespaces joined by one shaped veth (issue 7).

Runs in CI (root); skips with a reason where namespaces are unavailable. Every test checks that the
namespaces are gone afterwards, including after a deployment that fails to start.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from openai import OpenAI

from prfaas.launcher.deployment import Deployment
from prfaas.topology import DEFAULT_TOPOLOGY
from tests.e2e.deployments import make_topology
from tests.e2e.test_deployment import metric_value


def _netns_usable() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None or shutil.which("tc") is None:
        return "iproute2 (ip, tc) not installed"
    probe = subprocess.run(
        ["ip", "netns", "add", "pfprobe"], capture_output=True, text=True, check=False
    )
    subprocess.run(["ip", "netns", "del", "pfprobe"], capture_output=True, check=False)
    return None if probe.returncode == 0 else f"cannot create namespaces: {probe.stderr.strip()}"


SKIP = _netns_usable()
pytestmark = [pytest.mark.netns, pytest.mark.skipif(SKIP is not None, reason=SKIP or "")]


def veth_tx_bytes(ns: str) -> int:
    out = subprocess.run(
        ["ip", "netns", "exec", ns, "cat", "/sys/class/net/veth-a/statistics/tx_bytes"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return int(out.stdout)


def test_offloaded_kv_crosses_the_shaped_veth(tmp_path: Path) -> None:
    topo = make_topology(policy="prfaas", backend="emulated", threshold_tokens=256)
    deployment = Deployment(topo, DEFAULT_TOPOLOGY, tmp_path, netns=True, metrics_base_port=0)
    try:
        deployment.start()
        assert deployment.netns is not None and deployment.netns.exists()
        qdiscs = subprocess.run(
            ["ip", "netns", "exec", deployment.netns.ns_prfaas, "tc", "qdisc", "show", "dev", "veth-a"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        assert "tbf" in qdiscs
        before = veth_tx_bytes(deployment.netns.ns_prfaas)
        client = OpenAI(
            base_url=deployment.endpoints().http, api_key="unused", max_retries=0, timeout=60
        )
        model = client.models.list().data[0].id
        for prompt in ["short", "y" * 3000]:
            reply = client.completions.create(
                model=model, prompt=prompt, max_tokens=3, extra_body={"ignore_eos": True}
            )
            assert reply.usage.completion_tokens == 3
        url = deployment.endpoints().metrics[0]
        assert metric_value(url, "prfaas_routing_decisions_total", route="offload") == 1
        # The PrfaaS namespace sent at least the offloaded request's KV bytes over the veth.
        assert veth_tx_bytes(deployment.netns.ns_prfaas) - before > 50_000
    finally:
        deployment.stop()
    assert not deployment.netns.exists()


def test_failed_start_still_removes_the_namespaces(tmp_path: Path) -> None:
    topo = make_topology(backend="emulated", emulated_profile_pd=str(tmp_path / "missing.csv"))
    deployment = Deployment(topo, DEFAULT_TOPOLOGY, tmp_path, netns=True)
    with pytest.raises(RuntimeError):
        deployment.start(timeout_s=60)
    assert deployment.netns is not None and not deployment.netns.exists()
