"""Faults applied to a live, supervised deployment: signals through the launcher's supervisor
(its chaos handle: `kill`, `restart`, `wait_restarted`), commands to relays' control ports.

The supervisor restarts a killed or terminated process on its own (with its backoff), as under
`prfaas up`; `revive()` only waits until it has done so and the process is ready again. Blocking
supervisor and control-port calls run in a thread so that the workload's event loop keeps going.
"""

from __future__ import annotations

import asyncio
import signal

from prfaas.launcher.deployment import Deployment
from prfaas.launcher.relay_control import relay_command

READY_TIMEOUT_S = 120.0


class DeploymentActuator:
    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment
        # Name -> restart count before the fault made it exit (what `wait_restarted` waits past).
        self._restarts_before: dict[str, int] = {}

    async def _signal(self, name: str, sig: signal.Signals) -> str:
        supervisor = self.deployment.supervisor
        pid = supervisor.pid(name)
        before = await asyncio.to_thread(supervisor.kill, name, sig)
        if sig in (signal.SIGKILL, signal.SIGTERM):
            self._restarts_before[name] = before
        return f"pid {pid}: {sig.name}"

    async def kill(self, name: str) -> str:
        return await self._signal(name, signal.SIGKILL)

    async def stop(self, name: str) -> str:
        return await self._signal(name, signal.SIGSTOP)

    async def cont(self, name: str) -> str:
        return await self._signal(name, signal.SIGCONT)

    async def terminate(self, name: str) -> str:
        """SIGTERM through the supervisor's `restart` (started again at once, not a crash)."""
        supervisor = self.deployment.supervisor
        pid = supervisor.pid(name)
        self._restarts_before[name] = await asyncio.to_thread(supervisor.restart, name)
        return f"pid {pid}: SIGTERM (supervisor restart)"

    async def revive(self, name: str) -> str:
        """Wait until the supervisor has restarted `name` and it is ready again."""
        supervisor = self.deployment.supervisor
        before = self._restarts_before.pop(name)
        child = await asyncio.to_thread(supervisor.wait_restarted, name, before, READY_TIMEOUT_S)
        return f"pid {child.pid}: back (restart #{child.restarts})"

    async def relay(self, name: str, command: str) -> str:
        """One line to the relay's control port; its answer ('ok', stats JSON) or an error."""
        address = self.deployment.endpoints().relay_controls[name]
        answer = await asyncio.to_thread(relay_command, address, command)
        if not answer or answer.startswith("error"):
            raise RuntimeError(f"{name} answered {answer!r} to {command!r}")
        return answer
