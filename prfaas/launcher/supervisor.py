"""Start, watch, restart and stop a set of child processes without ever leaving orphans.

Lifecycle (the supervisor owns the children's lifetimes; children own nothing of the supervisor's):
  1. `start(spec)` spawns a child with PR_SET_PDEATHSIG=SIGTERM (Linux), so it dies if the launcher
     dies, even by SIGKILL; `wait_ready(child)` polls its probe while a deployment starts (a child
     that exits or hangs then fails the start; `request_stop()` interrupts the wait).
  2. `watch(policy)` starts the watcher thread. Every `tick_s` it reaps children: one that exited
     (any status, signals included) is restarted with the same argv, env and log file (appended)
     after the policy's backoff (restart_policy.py), then probed until ready; one not ready within
     `ready_timeout_s` is killed, which counts as a crash. Every death is reported with its cause
     (exit status or signal) and its log tail, and counted (`restarts(name)`).
  3. What ends a supervised deployment (`ended` is set, `end_reason` says why): a child whose spec
     says `clean_exit_ends` exiting with status 0 (the router stopping on its own), or a child
     crash-looping (the policy's limit of restarts within its window). Nothing is restarted after.
  4. `stop_all()` stops restarting, SIGTERMs the children in reverse start order, waits, SIGKILLs
     stragglers, and only then lets the watcher thread exit: PR_SET_PDEATHSIG fires when the
     *thread* that forked a child exits, and the watcher forks every restarted child.

The chaos suite drives it through `child(name)`, `pid(name)`, `kill(name, sig)`, `restart(name)`,
`restarts(name)` and `wait_restarted(name, after)`.
"""

from __future__ import annotations

import ctypes
import functools
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from prfaas.launcher.restart_policy import RestartHistory, RestartPolicy

_PR_SET_PDEATHSIG = 1
try:
    # Resolved in the parent: the child between fork and exec only makes the call.
    _PRCTL: Callable[..., int] | None = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):
    _PRCTL = None


def _die_with_parent(launcher_pid: int) -> None:
    """Runs in the child between fork and exec: ask the kernel to SIGTERM us when the parent
    (thread) dies, and exit if it already died before the call. Only where `setpriv` is missing:
    Python code between fork and exec in a process whose other threads run gRPC's poller once
    aborted a child (SIGABRT, "epoll_wait error: Bad file descriptor") before it could exec."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != launcher_pid:
            os._exit(70)


# util-linux's setpriv sets PR_SET_PDEATHSIG and execs the command (same pid), so no Python code
# runs in the forked child and subprocess can spawn without a preexec hook. The signal only covers
# a parent that dies *after* the prctl: a launcher killed between fork and setpriv's prctl (a
# restart, then SIGKILL a few ms later; CI caught it) would leave an orphan. So setpriv execs a
# shell that compares its parent with the launcher's pid and exits if they differ, then execs the
# command (still the same pid).
_SETPRIV = shutil.which("setpriv")
_ORPHAN_CHECK = '[ "$PPID" = "$0" ] || exit 70; exec "$@"'


def _pdeathsig_prefix() -> tuple[str, ...]:
    if not _SETPRIV:
        return ()
    return (_SETPRIV, "--pdeathsig", "TERM", "--", "sh", "-c", _ORPHAN_CHECK, str(os.getpid()))


def _print_stderr(message: str) -> None:
    print(f"prfaas up: {message}", file=sys.stderr, flush=True)


def exit_cause(returncode: int) -> str:
    """'exit code 3' or 'killed by SIGKILL' (Popen reports signals as negative codes)."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


class StartInterrupted(Exception):
    """`request_stop()` was called while a deployment was starting (Ctrl-C)."""


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
    # Exiting with status 0 ends a supervised deployment instead of restarting (the router).
    clean_exit_ends: bool = False


@dataclass
class Child:
    """One supervised process; the same object across restarts (`popen` is the current run)."""

    spec: ProcessSpec
    popen: subprocess.Popen[bytes]
    log_path: Path
    started_at: float = field(default_factory=time.monotonic)
    ready: bool = False
    restarts: int = 0
    # Set while the child is dead and waiting for its backoff to run out.
    restart_at: float | None = None
    # restart(name) asked for this exit: restart at once, not counted as a crash.
    restart_requested: bool = False
    history: RestartHistory | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None


class Supervisor:
    """Owns a deployment's child processes; logs go to `log_dir/<name>.log`."""

    def __init__(
        self, log_dir: Path, report: Callable[[str], None] = _print_stderr, tick_s: float = 0.2
    ) -> None:
        self.log_dir = log_dir
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.children: list[Child] = []
        self.report = report
        self.tick_s = tick_s
        self.policy = RestartPolicy()
        self.ended = threading.Event()
        self.end_reason: str | None = None
        self.ended_cleanly = False
        # Guards children's state between the watcher and callers; notified on every change.
        self._changed = threading.Condition()
        self._stopping = False
        self._stop_requested = threading.Event()
        self._watcher_exit = threading.Event()
        self._watcher: threading.Thread | None = None

    # -- starting ---------------------------------------------------------------------------

    def _spawn(self, spec: ProcessSpec, log_path: Path, mode: str) -> subprocess.Popen[bytes]:
        prefix = _pdeathsig_prefix()
        launcher_pid = os.getpid()
        with log_path.open(mode) as log:
            return subprocess.Popen(
                [*prefix, *spec.prefix, *spec.argv],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **spec.env},
                preexec_fn=None if prefix else functools.partial(_die_with_parent, launcher_pid),
            )

    def start(self, spec: ProcessSpec) -> Child:
        log_path = self.log_dir / f"{spec.name}.log"
        child = Child(spec, self._spawn(spec, log_path, "wb"), log_path)
        with self._changed:
            self.children.append(child)
        return child

    def request_stop(self) -> None:
        """Interrupt a `wait_ready` in progress and restart nothing more (signal handlers call
        this; it only sets a flag)."""
        self._stop_requested.set()

    def wait_ready(self, child: Child, timeout_s: float) -> None:
        """Poll the child's readiness probe; raise with its log tail if it exits or times out,
        StartInterrupted after `request_stop()`."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._stop_requested.is_set():
                raise StartInterrupted(f"stop requested while waiting for {child.spec.name}")
            if child.popen.poll() is not None:
                raise RuntimeError(
                    f"{child.spec.name} exited ({exit_cause(child.popen.returncode)}):\n"
                    f"{self.log_tail(child)}"
                )
            if child.spec.ready is None or child.spec.ready():
                child.ready = True
                return
            time.sleep(0.2)
        raise TimeoutError(
            f"{child.spec.name} not ready after {timeout_s:.0f}s:\n{self.log_tail(child)}"
        )

    # -- the chaos suite's handle ---------------------------------------------------------------

    def child(self, name: str) -> Child:
        with self._changed:
            for c in self.children:
                if c.spec.name == name:
                    return c
        raise KeyError(f"no child named {name!r}")

    def pid(self, name: str) -> int:
        return self.child(name).pid

    def restarts(self, name: str) -> int:
        """How many times `name` was restarted since the deployment started."""
        return self.child(name).restarts

    def summary(self) -> dict[str, int]:
        """Restarts per child, in start order."""
        with self._changed:
            return {c.spec.name: c.restarts for c in self.children}

    def kill(self, name: str, sig: int = signal.SIGKILL) -> int:
        """Send `sig` to the child; returns its restart count before, for `wait_restarted`."""
        c = self.child(name)
        with self._changed:
            before = c.restarts
            if c.alive:
                c.popen.send_signal(sig)
        return before

    def restart(self, name: str) -> int:
        """Stop the child with SIGTERM and start it again at once (not counted as a crash, and a
        clean exit does not end the deployment); returns the restart count before."""
        c = self.child(name)
        with self._changed:
            before = c.restarts
            if c.alive:
                c.restart_requested = True
                c.popen.send_signal(signal.SIGTERM)
            elif c.restart_at is not None:
                c.restart_at = time.monotonic()  # dead and backing off: start it now
        return before

    def wait_restarted(self, name: str, after: int, timeout_s: float = 120.0) -> Child:
        """Block until `name` has been restarted more than `after` times and is ready again."""
        c = self.child(name)
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while not (c.restarts > after and c.ready and c.alive):
                if self.ended.is_set():
                    raise RuntimeError(f"deployment ended: {self.end_reason}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"{name} not restarted and ready within {timeout_s:.0f}s "
                        f"(restarts {c.restarts}, ready {c.ready}):\n{self.log_tail(c)}"
                    )
                self._changed.wait(min(remaining, 0.5))
        return c

    # -- watching ------------------------------------------------------------------------------

    def watch(self, policy: RestartPolicy | None = None) -> None:
        """Start restarting children that die (step 2 of the lifecycle)."""
        if policy is not None:
            self.policy = policy
        if self._watcher is None:
            self._watcher = threading.Thread(
                target=self._watch_loop, name="supervisor", daemon=True
            )
            self._watcher.start()

    def _watch_loop(self) -> None:
        # Keeps running (idle) after stop_all() begins, until every child is reaped: children it
        # forked get SIGTERM from the kernel when this thread exits.
        while not self._watcher_exit.wait(self.tick_s):
            try:
                self._tick()
            except Exception as exc:  # a bug here must not take the restarted children with it
                self.report(f"supervisor error: {exc!r}")

    def _tick(self) -> None:
        now = time.monotonic()
        for c in list(self.children):
            with self._changed:
                # After a stop request (Ctrl-C also reaches the children through the terminal's
                # process group) deaths are the stop itself: neither restarted nor reported.
                if self._stopping or self._stop_requested.is_set() or self.ended.is_set():
                    return
                if c.restart_at is None and not c.alive:
                    self._on_exit(c, now)
                elif c.restart_at is not None and now >= c.restart_at:
                    self._respawn(c, now)
            if not c.ready and c.restart_at is None and c.alive:
                self._probe(c, now)

    def _on_exit(self, c: Child, now: float) -> None:
        """A child just died: schedule its restart, or end the deployment. Lock held."""
        code = c.popen.returncode
        cause, uptime = exit_cause(code), now - c.started_at
        name = c.spec.name
        if c.restart_requested:
            c.restart_requested = False
            c.restart_at = now
            self.report(f"{name} stopped for a requested restart ({cause})")
            return
        if c.spec.clean_exit_ends and code == 0:
            self._end(f"{name} exited cleanly; the deployment ends with it", clean=True)
            return
        if c.history is None:
            c.history = RestartHistory(self.policy)
        delay = c.history.next_delay(now, uptime)
        if delay is None:
            p = self.policy
            self._end(
                f"{name} is crash-looping ({cause} after {uptime:.1f}s; "
                f"{p.crash_loop_restarts} restarts within {p.crash_loop_window_s:.0f}s); "
                f"giving up. Last lines of {c.log_path}:\n{self.log_tail(c)}",
                clean=False,
            )
            return
        c.restart_at, c.ready = now + delay, False
        self.report(
            f"{name} died ({cause}) after {uptime:.1f}s up; restart #{c.restarts + 1} in "
            f"{delay:.1f}s. Last lines of {c.log_path}:\n{self.log_tail(c)}"
        )
        self._changed.notify_all()

    def _respawn(self, c: Child, now: float) -> None:
        """Start the child again with the same spec, appending to its log. Lock held."""
        with c.log_path.open("ab") as log:
            log.write(f"\n--- prfaas up: restart #{c.restarts + 1} ---\n".encode())
        c.popen = self._spawn(c.spec, c.log_path, "ab")
        c.started_at, c.restart_at, c.ready = now, None, False
        c.restarts += 1
        self._changed.notify_all()

    def _probe(self, c: Child, now: float) -> None:
        """Poll a restarted child's readiness (outside the lock: a probe may take a second)."""
        popen = c.popen
        ok = c.spec.ready is None or c.spec.ready()
        with self._changed:
            if popen is not c.popen or popen.poll() is not None:
                return
            if ok:
                c.ready = True
                self.report(f"{c.spec.name} is back (pid {popen.pid}, restart #{c.restarts})")
                self._changed.notify_all()
            elif now - c.started_at > self.policy.ready_timeout_s:
                self.report(f"{c.spec.name} not ready {self.policy.ready_timeout_s:.0f}s "
                            "after its restart; killing it")  # fmt: skip
                popen.kill()

    def _end(self, reason: str, clean: bool) -> None:
        """Stop restarting anything; whoever runs the deployment stops it. Lock held."""
        self.end_reason, self.ended_cleanly = reason, clean
        self.ended.set()
        self._changed.notify_all()

    # -- stopping ------------------------------------------------------------------------------

    def log_tail(self, child: Child, lines: int = 20) -> str:
        try:
            return "\n".join(child.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop_all(self, grace_s: float = 10.0) -> None:
        with self._changed:
            self._stopping = True
            children = list(reversed(self.children))
        for child in children:
            if child.popen.poll() is None:
                child.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for child in children:
            remaining = max(0.1, deadline - time.monotonic())
            try:
                child.popen.wait(timeout=remaining)
            except subprocess.TimeoutExpired:
                self.report(f"{child.spec.name} ignored SIGTERM; killing")
                child.popen.kill()
                child.popen.wait()
        self._watcher_exit.set()
        if self._watcher is not None:
            self._watcher.join()
            self._watcher = None
        with self._changed:
            self.children.clear()
