"""A taken port stops `Deployment.start` before any process starts, naming the port, its user in
the deployment and the process that holds it."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from prfaas.launcher.deployment import Deployment, PortsInUse
from prfaas.launcher.port_check import Listener, busy_ports
from prfaas.topology import DEFAULT_TOPOLOGY, load_topology


@pytest.fixture
def held_port():  # noqa: ANN201
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock.getsockname()[1]
    sock.close()


def test_busy_port_names_this_process_as_holder(held_port: int) -> None:
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    free_port = free.getsockname()[1]
    free.close()
    busy = busy_ports([Listener("router", "HTTP", "127.0.0.1", held_port),
                       Listener("pd-0", "gRPC", "127.0.0.1", free_port)])  # fmt: skip
    assert [b.listener.port for b in busy] == [held_port]
    assert busy[0].holder is not None and busy[0].holder.startswith(f"pid {os.getpid()} ")
    assert busy[0].message().startswith(f"port {held_port} (router HTTP on 127.0.0.1) is in use")


def test_deployment_refuses_to_start_on_a_taken_port(held_port: int, tmp_path: Path) -> None:
    topo = load_topology(DEFAULT_TOPOLOGY).replace(backend="emulated", http_port=held_port)
    deployment = Deployment(topo, DEFAULT_TOPOLOGY, tmp_path)
    with pytest.raises(PortsInUse, match=f"port {held_port} \\(router HTTP"):
        deployment.start()
    assert deployment.supervisor.children == []


def test_every_metrics_url_names_its_process(tmp_path: Path) -> None:
    topo = load_topology(DEFAULT_TOPOLOGY).replace(backend="emulated")
    endpoints = Deployment(topo, DEFAULT_TOPOLOGY, tmp_path, metrics_base_port=9400).endpoints()
    named = dict(zip(endpoints.metrics_processes, endpoints.metrics, strict=True))
    assert named == {
        "router": "http://127.0.0.1:8000/metrics",
        "prfaas-0": "http://127.0.0.1:9401/metrics",
        "pd-0": "http://127.0.0.1:9402/metrics",
        "pd-1": "http://127.0.0.1:9403/metrics",
        "link-pd-0": "http://127.0.0.1:9404/metrics",
        "link-pd-1": "http://127.0.0.1:9405/metrics",
    }


def test_listeners_in_the_ephemeral_range_are_named() -> None:
    from prfaas.launcher.port_check import ephemeral_listeners
    from prfaas.launcher.probes import ephemeral_port_range

    low, high = ephemeral_port_range()
    inside, below = (
        Listener("router", "HTTP", "127.0.0.1", low),
        Listener("pd-0", "gRPC", "127.0.0.1", low - 1),
    )
    assert ephemeral_listeners([inside, below]) == [inside]
    assert ephemeral_listeners([Listener("x", "KV", "127.0.0.1", high + 1)]) == []
