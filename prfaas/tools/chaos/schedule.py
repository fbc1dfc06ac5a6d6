"""Fault schedules: timed faults generated from a seed, written to JSON and replayed from it.

A schedule is everything a chaos run needs to be repeated: the faults (kind, target process,
start, duration, parameters), the workload (rate, seed, lengths) and the run's length. Times are
seconds from the workload's start. `generate()` is a pure function of its arguments, so the same
seed and topology give the same schedule; `Schedule.load(path)` gives back exactly what `save` wrote.

Fault kinds and what they do (the injector applies them):
  kill     SIGKILL; the supervisor restarts the process (or the chaos tool at the fault's end)
  stop     SIGSTOP, SIGCONT after `duration_s`
  restart  SIGTERM, wait for the exit, start again (the supervisor's or the chaos tool's start)
  cut      relay control port `cut`: reset every relayed connection once
  stall    relay `stall on` for `duration_s` (bytes held, connections open)
  rate     relay rate cap `params.rate_bytes_per_s` for `duration_s`, then the previous cap
  down     relay `down` for `duration_s` (cut, new connections refused), then `up`
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from prfaas.tools.chaos.targets import RELAY, Target

PROCESS_FAULTS = ("kill", "stop", "restart")
RELAY_FAULTS = ("cut", "stall", "rate", "down")
FAULT_KINDS = PROCESS_FAULTS + RELAY_FAULTS
SCHEDULE_VERSION = 1


@dataclass(frozen=True)
class Fault:
    kind: str
    target: str  # process name as the launcher names it (targets.py)
    start_s: float
    duration_s: float
    params: dict[str, float] = field(default_factory=dict)

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s

    def label(self) -> str:
        return f"{self.kind} {self.target} @{self.start_s:.1f}s+{self.duration_s:.1f}s"


@dataclass(frozen=True)
class WorkloadSpec:
    """The open-loop workload run meanwhile (loadgen's log-normal prompts, Poisson arrivals)."""

    rate_rps: float = 2.0
    seed: int = 0
    output_tokens: int = 16
    # Multiplies the paper's log-normal input lengths (median ~20K tokens); chosen so that the
    # median lands near the routing threshold and both short and long prompts occur.
    length_scale: float = 0.02
    max_input_tokens: int = 4096
    # Every request must end (success or error) within this bound; longer counts as hung.
    timeout_s: float = 90.0


@dataclass(frozen=True)
class Schedule:
    seed: int
    duration_s: float
    workload: WorkloadSpec
    faults: tuple[Fault, ...]
    # Throughput must be back within this long after each fault's end; failures in a fault's
    # window or this long after it are attributed to the fault.
    recovery_s: float = 30.0

    def to_json(self) -> dict[str, Any]:
        return {
            "version": SCHEDULE_VERSION,
            "seed": self.seed,
            "duration_s": self.duration_s,
            "recovery_s": self.recovery_s,
            "workload": asdict(self.workload),
            "faults": [asdict(f) for f in self.faults],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Schedule:
        if data.get("version") != SCHEDULE_VERSION:
            raise ValueError(f"unsupported schedule version {data.get('version')!r}")
        faults = tuple(Fault(**f) for f in data["faults"])
        for fault in faults:
            if fault.kind not in FAULT_KINDS:
                raise ValueError(f"unknown fault kind {fault.kind!r}")
        return cls(
            seed=int(data["seed"]),
            duration_s=float(data["duration_s"]),
            workload=WorkloadSpec(**data["workload"]),
            faults=faults,
            recovery_s=float(data["recovery_s"]),
        )

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> Schedule:
        return cls.from_json(json.loads(path.read_text()))


def applicable(kind: str, target: Target) -> bool:
    """Relay faults need a relay; process faults hit any process."""
    return kind in PROCESS_FAULTS or (kind in RELAY_FAULTS and target.kind == RELAY)


def generate(
    seed: int,
    duration_s: float,
    targets: Sequence[Target],
    *,
    workload: WorkloadSpec | None = None,
    menu: Sequence[tuple[str, str]] | None = None,
    baseline_s: float = 20.0,
    recovery_s: float = 30.0,
    fault_s: tuple[float, float] = (5.0, 15.0),
) -> Schedule:
    """Faults one after another: the first after `baseline_s` (the pre-fault throughput), each
    followed by `recovery_s` free of faults, none running past `duration_s`.

    `menu` lists (fault kind, target) pairs to draw from, the target a kind (targets.py) or one
    process's name (default: every applicable pair of kinds);
    pairs are drawn in a seeded shuffled order without repetition until the menu is used up, so a
    short schedule covers different kinds. The target of a pair is a seeded pick among the
    processes of that kind.
    """
    rng = random.Random(seed)
    by_kind: dict[str, list[Target]] = {}
    for target in targets:
        by_kind.setdefault(target.kind, []).append(target)
    by_name = {target.name: [target] for target in targets}
    pairs = list(menu) if menu is not None else [
        (kind, target_kind)
        for kind in FAULT_KINDS
        for target_kind, group in by_kind.items()
        if applicable(kind, group[0])
    ]  # fmt: skip
    for kind, wanted in pairs:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}")
        group = by_kind.get(wanted) or by_name.get(wanted)
        if not group or not applicable(kind, group[0]):
            raise ValueError(f"no {wanted!r} process for a {kind!r} fault")
    faults: list[Fault] = []
    order: list[tuple[str, str]] = []
    t = baseline_s
    while pairs:
        length = round(rng.uniform(*fault_s), 1)
        if t + length + recovery_s > duration_s:
            break
        if not order:
            order = rng.sample(pairs, len(pairs))
        kind, wanted = order.pop()
        target = rng.choice(by_kind.get(wanted) or by_name[wanted])
        params: dict[str, float] = (
            {"rate_bytes_per_s": round(10 ** rng.uniform(4.0, 6.0))} if kind == "rate" else {}
        )
        faults.append(Fault(kind, target.name, round(t, 1), length, params))
        t += length + recovery_s
    return Schedule(
        seed, duration_s, workload or WorkloadSpec(seed=seed), tuple(faults), recovery_s
    )
