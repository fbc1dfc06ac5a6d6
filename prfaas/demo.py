"""`prfaas demo` (what `make demo` runs): the local two-datacenter deployment serving real requests.

For each routing policy (prfaas, homogeneous-pd, naive-hetero) it starts deploy/local.toml — a
PrfaaS prefill worker, a PD-P and a PD-D worker running the real `small` hybrid model on the CPU,
the router with its OpenAI endpoint, and the emulated 1 Gbit/s cross-datacenter link — sends the
same open-loop workload (the paper's log-normal prompt lengths, scaled to this machine) through the
HTTP endpoint, stops it, and prints one comparison table with where the JSON, Markdown and plots are.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from prfaas.launcher.topology import BACKENDS, DEFAULT_TOPOLOGY
from prfaas.loadgen import (
    LoadConfig,
    compare_policies,
    lognormal_workload,
    schedule_for,
    write_comparison,
)
from prfaas.loadgen.workloads import Scaling


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--topology", default=str(DEFAULT_TOPOLOGY))
    parser.add_argument("--backend", choices=BACKENDS, default=None, help="default: the topology's")
    parser.add_argument("-n", "--num-requests", type=int, default=16)
    parser.add_argument("--rate", type=float, default=0.4, help="Poisson arrivals, requests/s")
    parser.add_argument(
        "--length-scale", type=float, default=0.05, help="scale of the paper's prompt lengths"
    )
    parser.add_argument("--max-input-tokens", type=int, default=4096)
    parser.add_argument("--output-tokens", type=int, default=16)
    parser.add_argument("--out-dir", default="runs/demo")


def run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    workload = lognormal_workload(
        args.num_requests,
        scaling=Scaling(
            length_scale=args.length_scale,
            output_tokens=args.output_tokens,
            max_input_tokens=args.max_input_tokens,
        ),
        seed=1,
    )
    schedule = schedule_for(workload, rate=args.rate, seed=1)
    lengths = sorted(r.input_tokens for r in workload.requests)
    print(
        f"prfaas demo: {len(lengths)} requests, prompt tokens {lengths[0]}..{lengths[-1]} "
        f"(median {lengths[len(lengths) // 2]}), {args.output_tokens} output tokens each, "
        f"Poisson {args.rate}/s; three policies, each on a fresh deployment of {args.topology}",
        flush=True,
    )
    out = Path(args.out_dir)
    try:
        comparison = compare_policies(
            workload,
            schedule,
            topology=args.topology,
            backend=args.backend,
            config=LoadConfig(timeout_s=300.0),
            warmup=1,
            log_dir=out / "logs",
        )
    except (RuntimeError, TimeoutError) as exc:
        print(f"prfaas demo: failed: {exc}", file=sys.stderr)
        return 1
    paths = write_comparison(comparison, out)
    print()
    print(comparison.table())
    print()
    print("Routing decisions (from the router's /metrics):")
    print(comparison.routing_table())
    print()
    print(f"Results: {paths['markdown']} and {paths['json']}")
    for name, path in sorted(paths.items()):
        if str(path).endswith(".png"):
            print(f"Plot ({name}): {path}")
    print(f"Process logs: {out / 'logs'}")
    print(f"Finished in {time.monotonic() - started:.0f} s")
    failed = sum(r.summary.failed for r in comparison.runs.values())
    return 1 if failed else 0
