"""Fault schedules: seeded generation, JSON round trip, and a replay that applies exactly the
recorded faults at their times (a recording actuator stands in for the deployment)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from prfaas.cli import main
from prfaas.tools.chaos.injector import Injector
from prfaas.tools.chaos.schedule import RELAY_FAULTS, Fault, Schedule, WorkloadSpec, generate
from prfaas.tools.chaos.targets import PD_DECODE, PRFAAS, RELAY, ROUTER, Target, targets_of
from prfaas.topology import LinkSpec
from tests.e2e.deployments import make_topology

TARGETS = targets_of(make_topology())


def test_targets_name_every_process_the_launcher_starts() -> None:
    kinds = {t.name: t.kind for t in TARGETS}
    assert kinds == {
        "link-pd-0": RELAY,
        "link-pd-1": RELAY,
        "prfaas-0": PRFAAS,
        "pd-0": "pd-prefill",
        "pd-1": PD_DECODE,
        "router": ROUTER,
    }


def test_same_seed_same_schedule_and_other_seed_another() -> None:
    a = generate(7, 600.0, TARGETS)
    assert a == generate(7, 600.0, TARGETS)
    assert a.faults != generate(8, 600.0, TARGETS).faults


def test_generated_faults_are_spaced_applicable_and_inside_the_run() -> None:
    schedule = generate(3, 900.0, TARGETS, baseline_s=20.0, recovery_s=30.0, fault_s=(5.0, 15.0))
    faults = schedule.faults
    assert len(faults) >= 15
    assert faults[0].start_s == 20.0
    for before, after in zip(faults, faults[1:], strict=False):
        assert after.start_s >= before.end_s + 30.0 - 1e-6
    assert faults[-1].end_s + 30.0 <= 900.0
    kinds = {t.name: t.kind for t in TARGETS}
    for fault in faults:
        assert 5.0 <= fault.duration_s <= 15.0
        if fault.kind in RELAY_FAULTS:
            assert kinds[fault.target] == RELAY, fault
        if fault.kind == "rate":
            assert 1e4 <= fault.params["rate_bytes_per_s"] <= 1e6
    # Drawn without repetition from the menu: the first 15 faults are 15 different pairs.
    pairs = [(f.kind, kinds[f.target]) for f in faults[:15]]
    assert len(set(pairs)) == 15


def test_menu_restricts_kinds_and_names_select_one_process() -> None:
    menu = [("kill", PRFAAS), ("stop", PD_DECODE), ("cut", "link-pd-1")]
    schedule = generate(11, 90.0, TARGETS, menu=menu, baseline_s=15.0, recovery_s=20.0,
                        fault_s=(4.0, 6.0))  # fmt: skip
    assert sorted((f.kind, f.target) for f in schedule.faults) == [
        ("cut", "link-pd-1"),
        ("kill", "prfaas-0"),
        ("stop", "pd-1"),
    ]
    with pytest.raises(ValueError, match="no 'router' process for a 'cut'"):
        generate(1, 90.0, TARGETS, menu=[("cut", ROUTER)])
    with pytest.raises(ValueError, match="unknown fault kind"):
        generate(1, 90.0, TARGETS, menu=[("explode", PRFAAS)])


def test_json_round_trip(tmp_path: Path) -> None:
    schedule = generate(5, 2000.0, TARGETS, workload=WorkloadSpec(rate_rps=1.5, seed=5))
    assert any(f.kind == "rate" for f in schedule.faults)  # params survive the trip too
    schedule.save(tmp_path / "s.json")
    assert Schedule.load(tmp_path / "s.json") == schedule
    broken = schedule.to_json() | {"version": 99}
    with pytest.raises(ValueError, match="version"):
        Schedule.from_json(broken)


class RecordingActuator:
    """Records (time, action, target) instead of touching processes; relays report a 1 MB/s cap."""

    def __init__(self, fail_on: str = "") -> None:
        self.calls: list[tuple[float, str, str]] = []
        self.t0 = time.perf_counter()
        self.fail_on = fail_on

    def _record(self, action: str, name: str) -> str:
        self.calls.append((time.perf_counter() - self.t0, action, name))
        if action == self.fail_on:
            raise RuntimeError("no such process")
        return "ok"

    async def kill(self, name: str) -> str:
        return self._record("kill", name)

    async def stop(self, name: str) -> str:
        return self._record("stop", name)

    async def cont(self, name: str) -> str:
        return self._record("cont", name)

    async def terminate(self, name: str) -> str:
        return self._record("terminate", name)

    async def revive(self, name: str) -> str:
        return self._record("revive", name)

    async def relay(self, name: str, command: str) -> str:
        self._record(command, name)
        return '{"rate_bytes_per_s": 1000000.0}' if command == "stats" else "ok"


RECORDED = Schedule(
    seed=0,
    duration_s=100.0,
    workload=WorkloadSpec(),
    faults=(
        Fault("kill", "prfaas-0", 10.0, 5.0),
        Fault("stop", "pd-1", 20.0, 4.0),
        Fault("restart", "router", 30.0, 2.0),
        Fault("cut", "link-pd-1", 40.0, 3.0),
        Fault("stall", "link-pd-0", 50.0, 4.0),
        Fault("rate", "link-pd-1", 60.0, 5.0, {"rate_bytes_per_s": 20000.0}),
        Fault("down", "link-pd-0", 70.0, 5.0),
    ),
)
# (schedule time, action, target) the replay must perform, in order.
EXPECTED = [
    (10.0, "kill", "prfaas-0"),
    (15.0, "revive", "prfaas-0"),
    (20.0, "stop", "pd-1"),
    (24.0, "cont", "pd-1"),
    (30.0, "terminate", "router"),
    (30.0, "revive", "router"),
    (40.0, "cut", "link-pd-1"),
    (50.0, "stall on", "link-pd-0"),
    (54.0, "stall off", "link-pd-0"),
    (60.0, "stats", "link-pd-1"),
    (60.0, "rate 20000", "link-pd-1"),
    (65.0, "rate 1e+06", "link-pd-1"),
    (70.0, "down", "link-pd-0"),
    (75.0, "up", "link-pd-0"),
]


def test_replay_from_file_applies_exactly_the_recorded_faults(tmp_path: Path) -> None:
    RECORDED.save(tmp_path / "s.json")
    actuator = RecordingActuator()
    scale = 0.01  # 100 schedule seconds in one real second
    events = asyncio.run(Injector(Schedule.load(tmp_path / "s.json"), actuator, scale).run())
    assert [(a, n) for _, a, n in actuator.calls] == [(a, n) for _, a, n in EXPECTED]
    for (t_real, _, _), (t_sched, _, _) in zip(actuator.calls, EXPECTED, strict=True):
        assert t_sched * scale - 0.005 <= t_real <= t_sched * scale + 0.1
    assert [e.action for e in events] == [a for _, a, _ in EXPECTED]
    assert all(e.ok for e in events)
    assert [e.fault for e in events] == [0, 0, 1, 1, 2, 2, 3, 4, 4, 5, 5, 5, 6, 6]


def test_a_failed_action_is_recorded_and_the_other_faults_still_run() -> None:
    actuator = RecordingActuator(fail_on="stop")
    events = asyncio.run(Injector(RECORDED, actuator, 0.002).run())
    failed = [e for e in events if not e.ok]
    assert [(e.action, e.detail) for e in failed] == [("stop", "RuntimeError: no such process")]
    assert len(events) == len(EXPECTED)


def test_targets_of_a_topology_without_relays() -> None:
    no_relay = make_topology().replace(link=LinkSpec(mode="none"))
    assert RELAY not in {t.kind for t in targets_of(no_relay)}
    assert Target("router", ROUTER) in targets_of(no_relay)


def test_cli_writes_a_schedule_and_replays_the_same_one(tmp_path: Path) -> None:
    first, again, replayed = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.json"
    argv = ["chaos", "--seed", "7", "--duration", "300", "--dry-run"]
    assert main([*argv, "--schedule-out", str(first)]) == 0
    assert main([*argv, "--schedule-out", str(again)]) == 0
    assert (
        main(["chaos", "--replay", str(first), "--dry-run", "--schedule-out", str(replayed)]) == 0
    )
    assert first.read_text() == again.read_text() == replayed.read_text()
    schedule = Schedule.load(first)
    assert schedule.seed == 7 and len(schedule.faults) >= 4
    soak = tmp_path / "soak.json"
    assert (
        main(["chaos", "--soak", "--duration", "1800", "--dry-run", "--schedule-out", str(soak)])
        == 0
    )
    steady = Schedule.load(soak)
    assert steady.faults == () and steady.workload.rate_rps == 1.0
