"""Supervisor with real child processes: restarts after any death, the chaos API, crash loops,
what ends a deployment, Ctrl-C during start, and no orphans (even when the launcher is killed)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from prfaas.launcher import supervisor as supervisor_module
from prfaas.launcher.restart_policy import RestartPolicy
from prfaas.launcher.supervisor import ProcessSpec, StartInterrupted, Supervisor

FAST = RestartPolicy(backoff_initial_s=0.05, backoff_max_s=0.2, crash_loop_restarts=3)


def _python(code: str, *args: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code), *args]


def _sleeper(name: str, **spec: object) -> ProcessSpec:
    return ProcessSpec(
        name, _python("import time; print('up', flush=True); time.sleep(300)"), **spec
    )  # type: ignore[arg-type]


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie still answers kill(0); its state in /proc says it is dead.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] == "Z"
    except OSError:
        return True


def _wait_gone(pid: int, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if _gone(pid):
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def supervisor(tmp_path: Path):  # noqa: ANN201
    messages: list[str] = []
    sup = Supervisor(tmp_path / "logs", report=messages.append, tick_s=0.05)
    sup.messages = messages  # type: ignore[attr-defined]
    try:
        yield sup
    finally:
        sup.stop_all(grace_s=5)


def test_sigkilled_child_is_restarted_with_the_same_argv(supervisor: Supervisor) -> None:
    log_path = supervisor.log_dir / "worker.log"
    # Ready once this run printed "up" (a restart appends a marker line first).
    spec = _sleeper("worker", ready=lambda: log_path.read_text().rstrip().endswith("up"))
    supervisor.wait_ready(supervisor.start(spec), 10)
    supervisor.watch(FAST)
    old_pid = supervisor.pid("worker")
    before = supervisor.kill("worker", signal.SIGKILL)
    child = supervisor.wait_restarted("worker", before, timeout_s=10)
    assert child.pid != old_pid and child.alive
    # The same argv (after the `setpriv --pdeathsig TERM --` prefix where setpriv exists).
    assert list(child.popen.args)[-len(spec.argv) :] == spec.argv
    assert supervisor.restarts("worker") == 1
    report = "\n".join(supervisor.messages)  # type: ignore[attr-defined]
    assert "worker died (killed by SIGKILL)" in report and "worker is back" in report
    log = child.log_path.read_text().splitlines()
    assert log.count("up") == 2 and "--- prfaas up: restart #1 ---" in log


def test_every_exit_status_is_restarted_and_counted(supervisor: Supervisor) -> None:
    # Exits with 0 after its first run, then sleeps: neither a clean exit nor an error ends it.
    marker = supervisor.log_dir / "ran"
    code = """
        import os, sys, time
        if not os.path.exists(sys.argv[1]):
            open(sys.argv[1], "w").close(); time.sleep(0.5); sys.exit(0)
        time.sleep(300)
    """
    supervisor.start(ProcessSpec("w", _python(code, str(marker))))
    supervisor.watch(FAST)
    supervisor.wait_restarted("w", 0, timeout_s=10)
    assert not supervisor.ended.is_set()
    assert any("w died (exit code 0)" in m for m in supervisor.messages)  # type: ignore[attr-defined]


def test_crash_loop_ends_the_deployment_with_the_log_tail(supervisor: Supervisor) -> None:
    marker = supervisor.log_dir / "ran"
    code = """
        import os, sys, time
        if not os.path.exists(sys.argv[1]):
            open(sys.argv[1], "w").close(); time.sleep(300)
        print("cannot bind port 1234", flush=True); sys.exit(3)
    """
    spec = ProcessSpec("w", _python(code, str(marker)), ready=marker.exists)
    supervisor.wait_ready(supervisor.start(spec), 10)
    supervisor.watch(FAST)
    supervisor.kill("w")
    assert supervisor.ended.wait(15)
    reason = supervisor.end_reason or ""
    assert "w is crash-looping (exit code 3" in reason and "cannot bind port 1234" in reason
    assert not supervisor.ended_cleanly
    assert supervisor.restarts("w") == FAST.crash_loop_restarts
    with pytest.raises(RuntimeError, match="crash-looping"):
        supervisor.wait_restarted("w", FAST.crash_loop_restarts, timeout_s=5)


def test_clean_exit_of_the_router_ends_it_a_crash_restarts_it(supervisor: Supervisor) -> None:
    supervisor.wait_ready(supervisor.start(_sleeper("router", clean_exit_ends=True)), 10)
    supervisor.watch(FAST)
    supervisor.wait_restarted("router", supervisor.kill("router", signal.SIGKILL), timeout_s=10)
    assert not supervisor.ended.is_set()
    # SIGINT: Python exits with KeyboardInterrupt (status 1), a crash; the router's own SIGTERM
    # handling returns 0, which we emulate with a child exiting 0 on SIGTERM.
    # Ready only once the handler is installed: a fixed sleep lost that race on a loaded machine
    # (SIGTERM before the handler is a death by signal, i.e. a crash, and the child restarts).
    handler_installed = supervisor.log_dir / "r2-handler"
    code = """
        import signal, sys, time
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        open(sys.argv[1], "w").close()
        time.sleep(300)
    """
    spec = ProcessSpec(
        "r2",
        _python(code, str(handler_installed)),
        clean_exit_ends=True,
        ready=handler_installed.exists,
    )
    supervisor.wait_ready(supervisor.start(spec), 30)
    supervisor.kill("r2", signal.SIGTERM)
    assert supervisor.ended.wait(10)
    assert supervisor.ended_cleanly and "r2 exited cleanly" in (supervisor.end_reason or "")


def test_requested_restart_is_immediate_and_not_a_crash(supervisor: Supervisor) -> None:
    code = """
        import signal, sys, time
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        time.sleep(300)
    """
    supervisor.wait_ready(
        supervisor.start(ProcessSpec("r", _python(code), clean_exit_ends=True)), 10
    )
    supervisor.watch(FAST)
    time.sleep(0.3)
    for _ in range(FAST.crash_loop_restarts + 1):  # more than the crash-loop limit
        supervisor.wait_restarted("r", supervisor.restart("r"), timeout_s=10)
        time.sleep(0.3)
    assert supervisor.restarts("r") == FAST.crash_loop_restarts + 1
    assert not supervisor.ended.is_set()


def test_a_restarted_child_that_never_gets_ready_is_killed(supervisor: Supervisor) -> None:
    flag = supervisor.log_dir / "ready"
    flag.touch()
    spec = _sleeper("w", ready=flag.exists)
    supervisor.wait_ready(supervisor.start(spec), 10)
    supervisor.watch(RestartPolicy(backoff_initial_s=0.05, ready_timeout_s=1.0))
    flag.unlink()
    supervisor.kill("w")
    deadline = time.monotonic() + 10
    while supervisor.restarts("w") < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert supervisor.restarts("w") >= 2
    assert any("not ready 1s after its restart" in m for m in supervisor.messages)  # type: ignore[attr-defined]


def test_request_stop_interrupts_a_start(supervisor: Supervisor) -> None:
    child = supervisor.start(_sleeper("slow", ready=lambda: False))
    supervisor.request_stop()
    started = time.monotonic()
    with pytest.raises(StartInterrupted):
        supervisor.wait_ready(child, timeout_s=60)
    assert time.monotonic() - started < 2


def test_stop_all_leaves_no_process_behind(supervisor: Supervisor) -> None:
    for name in ("a", "b"):
        supervisor.wait_ready(supervisor.start(_sleeper(name)), 10)
    supervisor.watch(FAST)
    supervisor.wait_restarted("a", supervisor.kill("a"), timeout_s=10)
    pids = [supervisor.pid("a"), supervisor.pid("b")]
    supervisor.stop_all(grace_s=5)
    assert all(_gone(pid) for pid in pids)


def test_children_die_with_a_killed_launcher_restarted_ones_too(tmp_path: Path) -> None:
    """PR_SET_PDEATHSIG: SIGKILL the launcher; its first child and the one the watcher thread
    restarted both die."""
    launcher = f"""
        import signal, sys, time
        from pathlib import Path
        from prfaas.launcher.restart_policy import RestartPolicy
        from prfaas.launcher.supervisor import ProcessSpec, Supervisor
        sup = Supervisor(Path({str(tmp_path)!r}), report=lambda m: None, tick_s=0.05)
        sleep = [sys.executable, "-c", "import time; time.sleep(300)"]
        for name in ("a", "b"):
            sup.wait_ready(sup.start(ProcessSpec(name, sleep)), 10)
        sup.watch(RestartPolicy(backoff_initial_s=0.05))
        sup.wait_restarted("b", sup.kill("b"), 10)
        print(sup.pid("a"), sup.pid("b"), flush=True)
        time.sleep(300)
    """
    proc = subprocess.Popen(_python(launcher), stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        pids = [int(p) for p in proc.stdout.readline().split()]
        assert len(pids) == 2 and not any(_gone(p) for p in pids)
        proc.kill()
        proc.wait()
        assert all(_wait_gone(p) for p in pids)
    finally:
        proc.kill()


@pytest.mark.skipif(supervisor_module._SETPRIV is None, reason="setpriv (util-linux) not installed")
def test_a_child_whose_launcher_died_before_its_pdeathsig_exits_at_once() -> None:
    """The race CI once hit: the launcher is killed between fork and the child's PR_SET_PDEATHSIG,
    so no signal will ever come. Played deterministically: the spawn prefix names this process as
    the launcher, but an intermediate shell forks the child, so its parent is not the launcher. It
    must exit (status 70) instead of sleeping on as an orphan."""
    prefix = supervisor_module._pdeathsig_prefix()
    sleeper = [sys.executable, "-c", "import time; time.sleep(300)"]
    # `"$@"; exit $?` makes sh fork the command (a bare "$@" as the last command may be exec'd).
    proc = subprocess.run(["sh", "-c", '"$@"; exit $?', "sh", *prefix, *sleeper], timeout=30)
    assert proc.returncode == 70
