"""`prfaas bench serve`: open-loop load against the OpenAI-compatible endpoint.

Examples:
  prfaas bench serve --workload lognormal --num-requests 50 --rate 0.5 --length-scale 0.02 \\
      --output-tokens 32
  prfaas bench serve --workload mooncake --trace prfaas/data/traces/mooncake_conversation_trace.jsonl \\
      --num-requests 200 --time-scale 0.05 --length-scale 0.05 --output-scale 0.05
  prfaas bench serve --compare --topology deploy/local.toml --backend emulated --rate 1 ...
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from prfaas.data import trace_file
from prfaas.security.https import add_ca_file_argument, trust_ca_file
from prfaas.tools.loadgen.arrivals import schedule_for
from prfaas.tools.loadgen.cache_report import cache_report, format_cache_table
from prfaas.tools.loadgen.compare import POLICIES, compare_policies, write_comparison
from prfaas.tools.loadgen.phases import LengthClasses, parse_phases, phased_workload
from prfaas.tools.loadgen.preflight import PreflightError, check_fits, probe_target
from prfaas.tools.loadgen.results import Results
from prfaas.tools.loadgen.run_report import format_table, write_results
from prfaas.tools.loadgen.runner import LoadConfig, run_load, warm_up
from prfaas.tools.loadgen.stage_stats import format_stage_table
from prfaas.tools.loadgen.workloads import (
    PAPER_MAX_TOKENS,
    PAPER_MIN_TOKENS,
    PAPER_MU,
    PAPER_SIGMA,
    Scaling,
    Workload,
    azure_workload,
    lognormal_workload,
    mooncake_workload,
)

# Conversation traces shipped as package data (prfaas/data/traces, sources and licenses there).
DEFAULT_TRACES = {
    "mooncake": trace_file("mooncake_conversation_trace.jsonl"),
    "azure": trace_file("azure_llm_inference_2023_conv.csv"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    w = parser.add_argument_group("workload")
    w.add_argument("--workload", choices=("lognormal", "mooncake", "azure"), default="lognormal")
    w.add_argument("--trace", help="trace file (default: the shipped conversation trace)")
    w.add_argument("-n", "--num-requests", type=int, default=100, help="requests to send (limit)")
    w.add_argument("--seed", type=int, default=0, help="prompt text and Poisson arrivals")
    w.add_argument("--length-scale", type=float, default=1.0, help="multiply input lengths")
    w.add_argument("--output-scale", type=float, default=1.0, help="multiply output lengths")
    w.add_argument("--output-tokens", type=int, help="fix every output length (tokens)")
    w.add_argument("--max-input-tokens", type=int, help="cap scaled input lengths (context)")
    w.add_argument("--block-tokens", type=int, default=512, help="Mooncake hash-id block size")
    w.add_argument(
        "--cache-block-tokens",
        type=int,
        default=256,
        help="the deployment's prefix-cache block size (worker.block_size), for the cache oracle",
    )
    w.add_argument("--mu", type=float, default=PAPER_MU, help="log-normal mu (paper: 9.90)")
    w.add_argument("--sigma", type=float, default=PAPER_SIGMA, help="log-normal sigma (paper: 1.0)")
    w.add_argument("--min-tokens", type=int, default=PAPER_MIN_TOKENS, help="truncation low")
    w.add_argument("--max-tokens", type=int, default=PAPER_MAX_TOKENS, help="truncation high")
    a = parser.add_argument_group("arrivals")
    a.add_argument("--rate", type=float, help="Poisson rate in req/s (default for lognormal: 1)")
    a.add_argument("--time-scale", type=float, default=1.0, help="multiply trace timestamps")
    a.add_argument(
        "--phases",
        help="a mix that changes over time, DURATION:RATE:LONG_FRACTION[,...] (loadgen/phases.py; "
        "replaces --workload, -n and --rate)",
    )
    a.add_argument("--phase-short-max", type=float, default=4096, help="short class upper bound")
    a.add_argument("--phase-long-min", type=float, default=32768, help="long class lower bound")
    a.add_argument("--max-concurrency", type=int, default=256, help="safety cap on in-flight")
    a.add_argument("--timeout", type=float, default=600.0, help="per-request timeout (s)")
    t = parser.add_argument_group("target")
    t.add_argument("--url", default="http://127.0.0.1:8000/v1", help="OpenAI base URL")
    t.add_argument("--model", help="model name to send (default: none, the server's)")
    t.add_argument(
        "--metrics-url",
        action="append",
        default=[],
        help="Prometheus endpoint (repeatable; the first is the router's, for routing decisions)",
    )
    t.add_argument(
        "--egress-url",
        action="append",
        help="endpoint whose KV bytes sent count as cross-datacenter egress (repeatable; "
        "default: every --metrics-url)",
    )
    add_ca_file_argument(t)
    t.add_argument("--scrape-interval", type=float, default=1.0, help="seconds between scrapes")
    t.add_argument("--warmup", type=int, default=0, help="unmeasured short requests first")
    c = parser.add_argument_group("compare")
    c.add_argument("--compare", action="store_true", help="run every routing policy in turn")
    c.add_argument("--topology", help="topology TOML for --compare (default deploy/local.toml)")
    c.add_argument("--backend", choices=("torch", "emulated"), help="backend override")
    c.add_argument("--policies", default=",".join(POLICIES), help="comma-separated policies")
    c.add_argument("--metrics-base-port", type=int, default=9400, help="worker /metrics ports")
    parser.add_argument("--out-dir", default="runs/bench", help="where results are written")
    parser.add_argument("--name", default="run", help="file name stem of a single run")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def build_workload(args: argparse.Namespace) -> Workload:
    scaling = Scaling(
        args.length_scale, args.output_scale, args.output_tokens, args.max_input_tokens
    )
    n = args.num_requests
    if args.workload == "lognormal":
        return lognormal_workload(
            n,
            mu=args.mu,
            sigma=args.sigma,
            min_tokens=args.min_tokens,
            max_tokens=args.max_tokens,
            scaling=scaling,
            seed=args.seed,
        )
    trace = args.trace or DEFAULT_TRACES[args.workload]
    if args.workload == "mooncake":
        return mooncake_workload(
            trace, limit=n, scaling=scaling, block_tokens=args.block_tokens, seed=args.seed
        )
    return azure_workload(trace, limit=n, scaling=scaling, seed=args.seed)


def attach_cache_reports(workload: Workload, runs: dict[str, Results], block_size: int) -> None:
    """For a workload with prefix hash ids: each run's cache reuse against the oracle, stored in
    its results and printed with the run's cross-cluster prefix moves."""
    if "scaled_block_tokens" not in workload.params:
        return
    for name, results in runs.items():
        tallies = cache_report(workload, results.records, block_size)
        results.cache = {k: t.to_json() for k, t in tallies.items()}
        print(f"\nprefix cache, {name} (oracle: an unbounded cache of {block_size}-token blocks, "
              "requests in order of arrival):")  # fmt: skip
        print(format_cache_table(tallies, results.prefix_moves))


def build_phased(args: argparse.Namespace) -> tuple[Workload, list[float]]:
    """--phases: the phased log-normal workload and its send times."""
    scaling = Scaling(
        args.length_scale, args.output_scale, args.output_tokens, args.max_input_tokens
    )
    classes = LengthClasses(args.phase_short_max, args.phase_long_min, args.mu, args.sigma,
                            args.min_tokens, args.max_tokens)  # fmt: skip
    load = phased_workload(parse_phases(args.phases), classes=classes, scaling=scaling,
                           seed=args.seed)  # fmt: skip
    return load.workload, load.schedule


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except KeyboardInterrupt:
        # Before sending began (probe, warm-up, a deployment starting) or a second Ctrl-C.
        print("prfaas bench serve: interrupted before any result was kept", file=sys.stderr)
        return 130


def interrupted_exit(results: Results, paths: dict[str, Path], what: str) -> int:
    """After a Ctrl-C during a run: say what was kept and where; exit status 130."""
    counts = results.config["interrupted"]
    print("\nwrote " + ", ".join(str(p) for p in paths.values()))
    print(f"prfaas bench serve: interrupted (Ctrl-C) during {what}: kept the "
          f"{counts['finished']} requests that finished; {counts['cancelled_in_flight']} in "
          f"flight were cancelled, {counts['never_sent']} never sent", file=sys.stderr)  # fmt: skip
    return 130


def _run(args: argparse.Namespace) -> int:
    trust_ca_file(args.ca_file)
    try:
        if args.phases:
            workload, schedule = build_phased(args)
            rate = None
        else:
            workload = build_workload(args)
            rate = args.rate if args.rate or workload.timestamps is not None else 1.0
            schedule = schedule_for(workload, rate=rate, time_scale=args.time_scale,
                                    seed=args.seed)  # fmt: skip
    except (OSError, ValueError, KeyError) as exc:
        print(f"prfaas bench serve: {exc}", file=sys.stderr)
        return 2
    arrivals = {"rate": rate, "time_scale": args.time_scale, "duration_s": max(schedule, default=0)}
    # Without --metrics-url the router's own /metrics (beside /v1) still gives routing decisions
    # and the per-stage table; it has no KV egress, so it is not sampled for that.
    derived = () if args.metrics_url else (args.url.rstrip("/").removesuffix("/v1") + "/metrics",)
    egress_urls = None if args.egress_url is None else tuple(args.egress_url)
    config = LoadConfig(
        max_concurrency=args.max_concurrency,
        timeout_s=args.timeout,
        model=args.model,
        metrics_urls=tuple(args.metrics_url) or derived,
        egress_urls=() if derived and egress_urls is None else egress_urls,
        scrape_interval_s=args.scrape_interval,
        progress=not args.no_progress,
    )
    print(
        f"{workload.name}: {len(workload.requests)} requests over {arrivals['duration_s']:.1f} s "
        f"(rate {rate or ('phases' if args.phases else 'trace')}), mean input "
        f"{sum(r.input_tokens for r in workload.requests) / max(1, len(workload.requests)):.0f} "
        f"tokens",
        file=sys.stderr,
    )
    if args.compare:
        comparison = compare_policies(
            workload,
            schedule,
            topology=args.topology,
            backend=args.backend,
            policies=[p for p in args.policies.split(",") if p],
            config=config,
            warmup=args.warmup,
            log_dir=Path(args.out_dir) / "logs",
            metrics_base_port=args.metrics_base_port,
        )
        comparison.config["arrivals"] = arrivals
        attach_cache_reports(workload, comparison.runs, args.cache_block_tokens)
        paths = write_comparison(comparison, args.out_dir)
        print(comparison.table())
        print()
        print(comparison.routing_table())
        stopped = [(name, r) for name, r in comparison.runs.items() if "interrupted" in r.config]
        if stopped:
            return interrupted_exit(stopped[0][1], paths, f"the {stopped[0][0]} run")
    else:
        try:
            check_fits(workload, probe_target(args.url), args.length_scale)
        except PreflightError as exc:
            print(f"prfaas bench serve: {exc}", file=sys.stderr)
            return 2
        warm_up(args.url, args.warmup, config)
        results = run_load(args.url, workload, schedule, config)
        results.config["arrivals"] = arrivals
        attach_cache_reports(workload, {args.name: results}, args.cache_block_tokens)
        paths = write_results(results, args.out_dir, args.name)
        print(format_table({args.name: results.summary}))
        if results.stages:
            print("\nper stage (router's prfaas_request_stage_seconds, this run):")
            print(format_stage_table(results.stages))
        if "interrupted" in results.config:
            return interrupted_exit(results, paths, "the run")
        summary = results.summary
        if summary.failed:
            print("\nwrote " + ", ".join(str(p) for p in paths.values()))
            errors = ", ".join(f"HTTP {k}: {v}" for k, v in summary.errors.items())
            print(f"prfaas bench serve: {summary.failed} of {summary.requests} requests failed "
                  f"({errors}); see {paths['json']}", file=sys.stderr)  # fmt: skip
            return 1
    print("\nwrote " + ", ".join(str(p) for p in paths.values()))
    return 0
