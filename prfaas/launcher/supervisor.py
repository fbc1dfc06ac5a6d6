"""Start, watch and stop a set of child processes without ever leaving orphans.

Every child is started with PR_SET_PDEATHSIG=SIGTERM (Linux), so it dies if the launcher dies, even
by SIGKILL; `stop_all()` sends SIGTERM in reverse start order, waits, then SIGKILLs stragglers. The
supervisor owns the children's lifetimes; children own nothing of the supervisor's.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in the child between fork and exec: ask the kernel to SIGTERM us when the parent dies."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


@dataclass(frozen=True)
class ProcessSpec:
    """One OS process of a deployment: a name for logs, its argv, and how to tell it is ready."""

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    # Returns True once the process serves; polled until the start deadline.
    ready: Callable[[], bool] | None = None
    # Command prefix (e.g. `ip netns exec NS`) when the process lives in a network namespace.
    prefix: tuple[str, ...] = ()


@dataclass
class Child:
    spec: ProcessSpec
    popen: subprocess.Popen[bytes]
    log_path: Path


class Supervisor:
    """Owns a deployment's child processes; logs go to `log_dir/<name>.log`."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.children: list[Child] = []

    def start(self, spec: ProcessSpec) -> Child:
        log_path = self.log_dir / f"{spec.name}.log"
        env = {**os.environ, **spec.env}
        with log_path.open("wb") as log:
            popen = subprocess.Popen(
                [*spec.prefix, *spec.argv],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                preexec_fn=_die_with_parent,
            )
        child = Child(spec, popen, log_path)
        self.children.append(child)
        return child

    def wait_ready(self, child: Child, timeout_s: float) -> None:
        """Poll the child's readiness probe; raise with its log tail if it exits or times out."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if child.popen.poll() is not None:
                raise RuntimeError(
                    f"{child.spec.name} exited with {child.popen.returncode}:\n{self.log_tail(child)}"
                )
            if child.spec.ready is None or child.spec.ready():
                return
            time.sleep(0.2)
        raise TimeoutError(
            f"{child.spec.name} not ready after {timeout_s:.0f}s:\n{self.log_tail(child)}"
        )

    def first_exited(self) -> Child | None:
        """A child that has exited on its own, if any (the deployment is then broken)."""
        return next((c for c in self.children if c.popen.poll() is not None), None)

    def log_tail(self, child: Child, lines: int = 20) -> str:
        try:
            return "\n".join(child.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop_all(self, grace_s: float = 10.0) -> None:
        for child in reversed(self.children):
            if child.popen.poll() is None:
                child.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for child in reversed(self.children):
            remaining = max(0.1, deadline - time.monotonic())
            try:
                child.popen.wait(timeout=remaining)
            except subprocess.TimeoutExpired:
                print(f"prfaas up: {child.spec.name} ignored SIGTERM; killing", file=sys.stderr)
                child.popen.kill()
                child.popen.wait()
        self.children.clear()
