"""`prfaas router` as a real process: serves HTTP, is not ready without workers, exits on SIGTERM."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_router_process_serves_and_shuts_down_on_sigterm() -> None:
    http_port, grpc_port = free_port(), free_port()
    cmd = [sys.executable, "-m", "prfaas.cli", "router", "--http-port", str(http_port),
           "--grpc-port", str(grpc_port), "--policy", "homogeneous-pd"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.stdout.read().decode()
            try:
                health = httpx.get(f"http://127.0.0.1:{http_port}/health", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "router did not start"
                time.sleep(0.1)
        assert health.status_code == 200
        # The topology's workers are not running: not ready, and requests get 503.
        assert httpx.get(f"http://127.0.0.1:{http_port}/ready", timeout=5).status_code == 503
        body = {"model": "prfaas-small", "prompt": "hi", "max_tokens": 2}
        r = httpx.post(f"http://127.0.0.1:{http_port}/v1/completions", json=body, timeout=5)
        assert r.status_code == 503
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
