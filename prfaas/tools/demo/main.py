"""`prfaas demo` (what `make demo` runs): the paper's point on this machine in a few minutes.

1. The real model path once: the default topology with the `small` model on the CPU, one prompt
   longer than the threshold, shown with where it was prefilled, how its KV crossed the link,
   where it was decoded and its timing (one_request.py).
2. The three routing policies on an emulated heterogeneous pair of clusters at a load above the
   homogeneous baseline's capacity (policies.py): the comparison table, two lines on why, and one
   plot of throughput and TTFT P90 per policy (plot.py). JSON and Markdown land in --out-dir.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from prfaas.tools.loadgen.compare import write_comparison
from prfaas.topology import DEFAULT_TOPOLOGY, TopologyError, load_topology


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out-dir", default="runs/demo")
    parser.add_argument(
        "--prompt-tokens", type=int, default=2048, help="the real-model request's prompt length"
    )
    parser.add_argument("--output-tokens", type=int, default=16, help="its generated tokens")
    parser.add_argument(
        "--rate-factor",
        type=float,
        default=1.3,
        help="offered load as a multiple of naive-hetero's planned capacity (the stronger "
        "baseline's; prfaas's is about twice it)",
    )
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of arrivals/policy")
    parser.add_argument("--port-base", type=int, default=25000, help="ports of the emulated part")
    parser.add_argument("--skip-model", action="store_true", help="only the policy comparison")


def _real_model(args: argparse.Namespace, out: Path) -> bool:
    from prfaas.tools.demo.one_request import run_one_request

    topo = load_topology(DEFAULT_TOPOLOGY).with_overrides(backend="torch", policy="prfaas")
    print(
        f"[1/2] The real model path: {topo.name} with the '{topo.model_preset}' hybrid model on "
        f"the CPU (1 PrfaaS prefill worker, PD prefill + decode workers, a "
        f"{topo.link.rate_gbps:g} Gbit/s relay); one {args.prompt_tokens}-token prompt.",
        flush=True,
    )
    t0 = time.monotonic()
    one = run_one_request(
        topo, DEFAULT_TOPOLOGY, out / "logs" / "model", args.prompt_tokens, args.output_tokens
    )
    for line in one.lines():
        print(line)
    print(f"  (start, request and stop took {time.monotonic() - t0:.0f} s)\n", flush=True)
    return one.record.ok


def _policies(args: argparse.Namespace, out: Path) -> bool:
    from prfaas.tools.demo.plot import policy_bars
    from prfaas.tools.demo.policies import DEMO_SCALE, RATE_BASELINE, run_policies

    print(
        f"[2/2] The three policies on emulated heterogeneous clusters (PrfaaS: "
        f"{DEMO_SCALE.n_prfaas} H200-profile worker; PD: {DEMO_SCALE.n_pd} H20-profile workers; "
        f"one {DEMO_SCALE.link_gbps:g} Gbit/s link; paper's log-normal prompt lengths), "
        f"{args.duration:g} s of Poisson arrivals each at {args.rate_factor:g}x {RATE_BASELINE}'s "
        f"planned capacity.",
        flush=True,
    )
    run = run_policies(
        rate_factor=args.rate_factor,
        duration_s=args.duration,
        log_dir=out / "logs",
        port_base=args.port_base,
    )
    comparison = run.comparison
    comparison.config["offered_rps"] = run.rate_rps
    paths = write_comparison(comparison, out)
    plot = policy_bars(
        {name: r.summary for name, r in comparison.runs.items()},
        run.rate_rps,
        out / "policies.png",
        {name: run.capacity(name) for name in comparison.runs},
        DEMO_SCALE.link_gbps,
    )
    print()
    print(comparison.table())
    print()
    print("The planner's capacity (Λ_max, same inputs) beside what each policy carried:")
    print(run.capacity_table())
    for line in run.explanation():
        print(line)
    print()
    print("Routing decisions (from the router's /metrics):")
    print(comparison.routing_table())
    print()
    print(f"Plot: {plot}")
    print(f"Results: {paths['markdown']} and {paths['json']}; process logs: {out / 'logs'}")
    # Overloaded baselines answering 429 is the point; a failure of prfaas itself is not.
    return comparison.runs["prfaas"].summary.failed == 0


def run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    out = Path(args.out_dir)
    try:
        ok = args.skip_model or _real_model(args, out)
        ok = _policies(args, out) and ok
    except (RuntimeError, TimeoutError, TopologyError) as exc:
        print(f"prfaas demo: failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("prfaas demo: interrupted; every process it started is stopped", file=sys.stderr)
        return 130
    print(f"Finished in {time.monotonic() - started:.0f} s")
    return 0 if ok else 1
