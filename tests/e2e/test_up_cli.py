"""`prfaas up` as users run it (the CLI, a subprocess): what ends a deployment, and that nothing
outlives it. A crash-looping child ends it with the reason and log tail; Ctrl-C during start
stops what was started."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from prfaas.launcher.probes import free_port_range
from tests.e2e.deployments import make_topology


def _children(pid: int) -> dict[int, str]:
    """Live child processes of `pid`: pid -> command line."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            out[int(entry.name)] = cmdline
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class Up:
    """`prfaas up TOPOLOGY` in a subprocess, its stdout and stderr collected line by line."""

    def __init__(self, tmp_path: Path, *extra: str) -> None:
        self.topo = make_topology(policy="prfaas", backend="emulated")
        topo_file = tmp_path / "topology.toml"
        topo_file.write_text(self.topo.to_toml())
        argv = [sys.executable, "-m", "prfaas.cli", "up", str(topo_file)]
        argv += ["--log-dir", str(tmp_path / "logs")]
        argv += ["--metrics-base-port", str(free_port_range(8) - 1), *extra]
        env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        for stream, sink in ((self.proc.stdout, self.stdout), (self.proc.stderr, self.stderr)):
            threading.Thread(target=self._read, args=(stream, sink), daemon=True).start()

    def _read(self, stream: object, sink: list[str]) -> None:
        for line in stream:  # type: ignore[attr-defined]
            sink.append(line)

    def wait_for(self, text: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if any(text in line for line in self.stdout + self.stderr):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"no {text!r} in output:\n{''.join(self.stdout + self.stderr)}")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def test_crash_looping_child_ends_the_deployment_with_its_reason(tmp_path: Path) -> None:
    up = Up(tmp_path, "--max-restarts", "2", "--restart-window", "120")
    try:
        up.wait_for("OpenAI endpoint", timeout_s=180)
        assert sum("relay control:" in line for line in up.stdout) == 2
        children = _children(up.proc.pid)
        pd0 = next(pid for pid, cmd in children.items() if "--worker-id pd-0 " in cmd)
        # pd-0's gRPC port taken by someone else: every restart fails to bind, a crash loop.
        port = up.topo.pd_grpc_base_port
        os.kill(pd0, signal.SIGKILL)
        blocker = socket.socket()
        deadline = time.monotonic() + 5
        while True:
            try:
                blocker.bind(("127.0.0.1", port))
                break
            except OSError:
                assert time.monotonic() < deadline, "pd-0's port never came free"
                time.sleep(0.02)
        blocker.listen()
        try:
            assert up.proc.wait(timeout=120) == 1
        finally:
            blocker.close()
        errors = "".join(up.stderr)
        assert "pd-0 died (killed by SIGKILL)" in errors
        assert "pd-0 is crash-looping" in errors
        # ... with pd-0's log tail, which names the port it could not bind.
        assert f"127.0.0.1:{port}" in errors.split("pd-0 is crash-looping", 1)[1]
        assert "stopped (restarts:" in "".join(up.stdout) and "pd-0 2" in "".join(up.stdout)
        time.sleep(0.5)
        assert not [pid for pid in children if pid != pd0 and _alive(pid)]
    finally:
        up.close()


def test_ctrl_c_while_starting_stops_everything(tmp_path: Path) -> None:
    up = Up(tmp_path)
    try:
        up.wait_for("starting", timeout_s=60)
        deadline = time.monotonic() + 60
        while len(_children(up.proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        children = _children(up.proc.pid)
        assert children, "prfaas up started no process"
        up.proc.send_signal(signal.SIGINT)
        assert up.proc.wait(timeout=30) == 130
        assert "interrupted while starting" in "".join(up.stderr)
        time.sleep(0.5)
        assert not [pid for pid in children if _alive(pid)]
    finally:
        up.close()
