"""`prfaas router` as a real process: serves HTTP, is not ready without workers, exits on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from prfaas.launcher.probes import free_port
from prfaas.topology import load_topology


def test_router_process_serves_and_shuts_down_on_sigterm(tmp_path: Path) -> None:
    http_port, grpc_port = free_port(), free_port()
    # Workers on ports nobody listens on (not the defaults, which a running demo may use).
    topo = load_topology().with_overrides(
        prfaas_grpc_base_port=free_port(),
        pd_grpc_base_port=free_port(),
        pd_kv_base_port=free_port(),
    )
    (tmp_path / "topo.toml").write_text(topo.to_toml())
    cmd = [sys.executable, "-m", "prfaas.cli", "router", "--http-port", str(http_port),
           "--grpc-port", str(grpc_port), "--policy", "homogeneous-pd",
           "--topology", str(tmp_path / "topo.toml")]  # fmt: skip
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


def test_router_and_tokenizer_do_not_import_torch() -> None:
    """The router process stays light: no torch (hundreds of MB, seconds of import)."""
    code = (
        "import sys, prfaas.router.main as m, prfaas.tokenizer.byte_level\n"
        "from prfaas.topology import load_topology\n"
        "m.build(load_topology())\n"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
