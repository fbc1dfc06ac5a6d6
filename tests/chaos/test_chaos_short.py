"""The short chaos run of `make test`: a seeded ~90 s schedule against a real deployment (emulated
backend, launcher supervision) with three faults of different kinds: SIGKILL of the PrfaaS worker,
SIGSTOP/SIGCONT of the PD decode worker, a relay cut. Every property of the long run is asserted.
"""

from __future__ import annotations

import json
from pathlib import Path

from prfaas.tools.chaos.run import RunOptions, run_chaos
from prfaas.tools.chaos.schedule import Schedule, WorkloadSpec, generate
from prfaas.tools.chaos.targets import PD_DECODE, PRFAAS, targets_of
from prfaas.topology import DEFAULT_TOPOLOGY
from tests.e2e.deployments import make_topology


def test_short_chaos_schedule_keeps_every_promise(tmp_path: Path) -> None:
    topo = make_topology(backend="emulated", policy="prfaas")
    targets = targets_of(topo)
    decode = next(t for t in targets if t.kind == PD_DECODE)
    # The cut hits the relay in front of the decode worker: the link PrfaaS KV crosses.
    menu = [("kill", PRFAAS), ("stop", PD_DECODE), ("cut", f"link-{decode.name}")]
    # 48 output tokens (~1.2 s of decode each): several requests are in flight when a fault hits.
    workload = WorkloadSpec(rate_rps=2.0, seed=11, output_tokens=48, timeout_s=60.0)
    schedule = generate(
        11,
        90.0,
        targets,
        workload=workload,
        menu=menu,
        baseline_s=15.0,
        recovery_s=20.0,
        fault_s=(4.0, 6.0),
    )
    assert sorted(f.kind for f in schedule.faults) == ["cut", "kill", "stop"]
    # The run replays the file, as `prfaas chaos --replay` does.
    schedule.save(tmp_path / "schedule.json")
    replayed = Schedule.load(tmp_path / "schedule.json")
    options = RunOptions(sample_interval_s=2.0, warmup_s=10.0)
    result = run_chaos(topo, DEFAULT_TOPOLOGY, replayed, tmp_path / "run", options)
    summary = (tmp_path / "run" / "summary.txt").read_text()
    print(summary)

    actions = [(e["action"], e["target"], e["ok"]) for e in result["events"]]
    assert all(ok for _, _, ok in actions), summary
    kinds = {a for a, _, _ in actions}
    assert {"kill", "revive", "stop", "cont", "cut"} <= kinds, actions
    # The launcher's supervisor (not the chaos tool) brought the killed PrfaaS worker back.
    restarts = result["verdict"]["checks"]["deployment_up"]["restarts"]
    assert restarts["prfaas-0"] == 1, summary

    checks = result["verdict"]["checks"]
    assert set(checks) == {
        "no_hung", "no_silent_loss", "all_explained", "leak_free", "recovered",
        "deployment_up", "faults_applied",
    }  # fmt: skip
    for name in checks:
        assert checks[name]["passed"], f"{name}: {json.dumps(checks[name])[:2000]}\n{summary}"
    # The workload really ran through the faults (not an empty pass).
    assert result["verdict"]["requests"] >= 100, summary
    assert result["verdict"]["succeeded"] >= 0.7 * result["verdict"]["requests"], summary
    # Every process was sampled for RSS and descriptors.
    sampled = {s["name"] for s in result["resources"]}
    assert {t.name for t in targets} <= sampled, sampled
