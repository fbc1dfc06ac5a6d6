"""The netns scripts (prfaas/data/netns, linked from deploy/netns): idempotent setup and
teardown, shaping applied (root + ip netns only)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from prfaas.data import netns_script

ENV = {**os.environ, "PRFAAS_NS_PREFIX": f"pxt{os.getpid() % 10000}"}
NS_A = ENV["PRFAAS_NS_PREFIX"] + "-a"
NS_B = ENV["PRFAAS_NS_PREFIX"] + "-b"


def _netns_available() -> str | None:
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    if shutil.which("ip") is None:
        return "iproute2 (`ip`) is not installed"
    probe = subprocess.run(["ip", "netns", "list"], capture_output=True)
    return None if probe.returncode == 0 else "`ip netns` is unavailable here"


pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(bool(_netns_available()), reason=_netns_available() or ""),
]


SERVER = (
    "import socket; s = socket.create_server(('10.77.0.2', 7701)); print('ready', flush=True); "
    "c, _ = s.accept(); c.sendall(b'pong')"
)
CLIENT = "import socket; print(socket.create_connection(('10.77.0.2', 7701), timeout=5).recv(4).decode())"


def sh(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), env=ENV, capture_output=True, text=True, check=True)


def test_setup_is_idempotent_shapes_the_link_and_teardown_removes_it() -> None:
    try:
        sh("bash", str(netns_script("setup.sh")), "100mbit")
        # Again: replaces the shaping, no error.
        sh("bash", str(netns_script("setup.sh")), "200mbit")
        qdisc = sh("ip", "netns", "exec", NS_A, "tc", "qdisc", "show", "dev", "veth-a").stdout
        assert "tbf" in qdisc and "200Mbit" in qdisc
        server = subprocess.Popen(
            ["ip", "netns", "exec", NS_B, sys.executable, "-c", SERVER],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.stdout is not None and server.stdout.readline().strip() == "ready"
            got = sh("ip", "netns", "exec", NS_A, sys.executable, "-c", CLIENT).stdout
            assert got.strip() == "pong"
        finally:
            server.kill()
            server.wait()
    finally:
        sh("bash", str(netns_script("teardown.sh")))
        sh("bash", str(netns_script("teardown.sh")))
    assert NS_A not in sh("ip", "netns", "list").stdout
    assert NS_B not in sh("ip", "netns", "list").stdout
