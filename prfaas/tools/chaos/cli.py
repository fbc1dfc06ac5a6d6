"""`prfaas chaos`: a seeded, replayable fault schedule against a whole deployment under load;
`--soak` runs the same machinery with no faults at 1 req/s and judges memory and descriptors.

  prfaas chaos --seed 7 --duration 120 --schedule-out f.json   # generate, write, run
  prfaas chaos --replay f.json                                 # run exactly the recorded faults
  prfaas chaos --soak --duration 1800                          # steady load, RSS/fd slopes
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from prfaas.tools.chaos.run import RunOptions, run_chaos
from prfaas.tools.chaos.schedule import Schedule, WorkloadSpec, generate
from prfaas.tools.chaos.targets import targets_of
from prfaas.topology import BACKENDS, DEFAULT_TOPOLOGY, POLICIES, load_topology


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("topology", nargs="?", default=str(DEFAULT_TOPOLOGY), help="topology TOML")
    parser.add_argument("--backend", choices=BACKENDS, default="emulated", help="worker backend")
    parser.add_argument("--policy", choices=POLICIES, help="override the topology's policy")
    parser.add_argument("--seed", type=int, default=0, help="seeds the faults and the workload")
    parser.add_argument("--duration", type=float, default=120.0, help="workload seconds")
    parser.add_argument("--rate", type=float, help="requests/s (default 2, or 1 with --soak)")
    parser.add_argument("--output-tokens", type=int, default=16, help="tokens per request")
    parser.add_argument("--timeout", type=float, default=90.0, help="a request is hung after")
    parser.add_argument("--recovery", type=float, default=30.0, help="seconds to recover")
    parser.add_argument("--schedule-out", type=Path, help="also write the schedule here")
    parser.add_argument("--replay", type=Path, help="run this schedule file instead")
    parser.add_argument("--dry-run", action="store_true", help="write the schedule and stop")
    parser.add_argument("--soak", action="store_true", help="no faults; judge RSS and fds")
    parser.add_argument("--sample-interval", type=float, default=5.0, help="RSS/fd sampling s")
    parser.add_argument("--warmup", type=float, default=60.0, help="slopes fitted after this")
    parser.add_argument("--out", type=Path, default=Path("runs/chaos"), help="output folder")


def run(args: argparse.Namespace) -> int:
    path = Path(args.topology)
    topo = load_topology(path).with_overrides(backend=args.backend, policy=args.policy)
    if args.replay is not None:
        schedule = Schedule.load(args.replay)
    else:
        rate = args.rate if args.rate is not None else (1.0 if args.soak else 2.0)
        workload = WorkloadSpec(
            rate_rps=rate, seed=args.seed, output_tokens=args.output_tokens, timeout_s=args.timeout
        )
        schedule = generate(
            args.seed, args.duration, targets_of(topo), workload=workload, recovery_s=args.recovery
        )
        if args.soak:
            schedule = Schedule(args.seed, args.duration, workload, (), args.recovery)
    if args.schedule_out is not None:
        schedule.save(args.schedule_out)
    for fault in schedule.faults:
        print(f"  fault: {fault.label()} {fault.params or ''}", flush=True)
    if args.dry_run:
        return 0
    options = RunOptions(
        sample_interval_s=args.sample_interval, warmup_s=args.warmup, soak=args.soak
    )
    result = run_chaos(topo, path, schedule, args.out, options)
    sys.stdout.write((args.out / "summary.txt").read_text())
    print(f"result: {args.out / 'result.json'}")
    return 0 if result["verdict"]["passed"] else 1
