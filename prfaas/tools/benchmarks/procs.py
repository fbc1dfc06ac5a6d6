"""Processes for benchmarks: PD / prefill workers and an optional link relay, under a Supervisor.

Every child runs one torch thread with OMP_WAIT_POLICY=PASSIVE (the benchmark machines are small
and shared). All children are started first, then waited for, so their imports overlap.
"""

from __future__ import annotations

import socket
import sys
from dataclasses import dataclass

from prfaas.launcher.probes import free_port, grpc_ready
from prfaas.launcher.supervisor import ProcessSpec, Supervisor

CHILD_ENV = {"OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1"}
START_TIMEOUT_S = 180.0


def _tcp_listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass(frozen=True)
class Worker:
    name: str
    grpc_address: str
    kv_port: int = 0


def worker_spec(
    kind: str, name: str, extra: list[str], role: str = "mixed"
) -> tuple[ProcessSpec, Worker]:
    """`kind` is "pd" or "prefill"; PD workers also get a KV receiver port and a role."""
    port = free_port()
    argv = [sys.executable, "-m", "prfaas.cli", f"{kind}-worker", "--worker-id", name]
    argv += ["--grpc-port", str(port), "--threads", "1", *extra]
    kv_port = 0
    if kind == "pd":
        kv_port = free_port()
        argv += ["--role", role, "--kv-port", str(kv_port)]
    address = f"127.0.0.1:{port}"
    spec = ProcessSpec(name, argv, env=CHILD_ENV, ready=lambda: grpc_ready(address))
    return spec, Worker(name, address, kv_port)


def relay_spec(target_port: int, rate_mbit: float, delay_ms: float) -> tuple[ProcessSpec, int]:
    """A `prfaas link` relay in front of 127.0.0.1:target_port; returns (spec, listen port)."""
    port = free_port()
    argv = [sys.executable, "-m", "prfaas.cli", "link", "--listen", f"127.0.0.1:{port}"]
    argv += ["--target", f"127.0.0.1:{target_port}", "--rate-mbit", str(rate_mbit)]
    argv += ["--delay-ms", str(delay_ms)]
    return ProcessSpec("link", argv, env=CHILD_ENV, ready=lambda: _tcp_listening(port)), port


def start_all(sup: Supervisor, specs: list[ProcessSpec]) -> None:
    children = [sup.start(spec) for spec in specs]
    for child in children:
        sup.wait_ready(child, timeout_s=START_TIMEOUT_S)
