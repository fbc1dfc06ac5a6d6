"""Applies a schedule's faults at their times and records what was done, when.

Each fault runs as its own task (replayed schedules may overlap faults): it sleeps until its start,
applies its onset, sleeps for its duration, applies its end. The `Actuator` does the actual work
on processes and relays, so the same injector drives a live deployment (actuator.py) or a
recording fake (tests). Every action lands in `events` with its time from the run's start; a
failed action is recorded with its error and does not stop the other faults.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from prfaas.tools.chaos.schedule import Fault, Schedule


class Actuator(Protocol):
    async def kill(self, name: str) -> str: ...
    async def stop(self, name: str) -> str: ...
    async def cont(self, name: str) -> str: ...
    async def terminate(self, name: str) -> str: ...
    async def revive(self, name: str) -> str: ...
    async def relay(self, name: str, command: str) -> str: ...


@dataclass(frozen=True)
class Event:
    t_s: float
    fault: int  # index into the schedule's faults
    action: str
    target: str
    detail: str
    ok: bool

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Injector:
    def __init__(self, schedule: Schedule, actuator: Actuator, time_scale: float = 1.0) -> None:
        self.schedule = schedule
        self.actuator = actuator
        # Multiplies every time of the schedule (tests run schedules faster); 1.0 in real runs.
        self.time_scale = time_scale
        self.events: list[Event] = []
        self._t0 = 0.0

    async def run(self, t0: float | None = None) -> list[Event]:
        """Apply every fault; `t0` is the run's start on the perf_counter clock (default: now)."""
        self._t0 = time.perf_counter() if t0 is None else t0
        await asyncio.gather(*(self._one(i, f) for i, f in enumerate(self.schedule.faults)))
        self.events.sort(key=lambda e: e.t_s)
        return self.events

    async def _at(self, t_s: float) -> None:
        delay = t_s * self.time_scale - (time.perf_counter() - self._t0)
        if delay > 0:
            await asyncio.sleep(delay)

    async def _do(self, index: int, action: str, target: str, step: Any) -> str:
        t = time.perf_counter() - self._t0
        try:
            detail, ok = await step, True
        except Exception as exc:  # noqa: BLE001 (recorded; the run and other faults go on)
            detail, ok = f"{type(exc).__name__}: {exc}", False
        self.events.append(Event(round(t, 3), index, action, target, str(detail), ok))
        return str(detail)

    async def _one(self, index: int, fault: Fault) -> None:
        act, name = self.actuator, fault.target
        await self._at(fault.start_s)
        if fault.kind == "kill":
            await self._do(index, "kill", name, act.kill(name))
            await self._at(fault.end_s)
            await self._do(index, "revive", name, act.revive(name))
        elif fault.kind == "stop":
            await self._do(index, "stop", name, act.stop(name))
            await self._at(fault.end_s)
            await self._do(index, "cont", name, act.cont(name))
        elif fault.kind == "restart":
            await self._do(index, "terminate", name, act.terminate(name))
            await self._do(index, "revive", name, act.revive(name))
        elif fault.kind == "cut":
            await self._do(index, "cut", name, act.relay(name, "cut"))
        elif fault.kind == "stall":
            await self._do(index, "stall on", name, act.relay(name, "stall on"))
            await self._at(fault.end_s)
            await self._do(index, "stall off", name, act.relay(name, "stall off"))
        elif fault.kind == "down":
            await self._do(index, "down", name, act.relay(name, "down"))
            await self._at(fault.end_s)
            await self._do(index, "up", name, act.relay(name, "up"))
        elif fault.kind == "rate":
            before = await self._do(index, "stats", name, act.relay(name, "stats"))
            rate = fault.params["rate_bytes_per_s"]
            await self._do(index, f"rate {rate:g}", name, act.relay(name, f"rate {rate:g}"))
            await self._at(fault.end_s)
            restore = _rate_command(before)
            await self._do(index, restore, name, act.relay(name, restore))
        else:
            raise ValueError(f"unknown fault kind {fault.kind!r}")


def _rate_command(stats_line: str) -> str:
    """The `rate` command restoring the cap a relay reported in `stats` (off when none/unknown)."""
    try:
        rate = json.loads(stats_line).get("rate_bytes_per_s")
    except ValueError:
        rate = None
    return f"rate {rate:g}" if rate else "rate off"
