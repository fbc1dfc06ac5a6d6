"""`prfaas experiment`: the paper's case study, scaled, on real processes, next to the planner.

For each policy (prfaas, homogeneous-pd, naive-hetero) it starts one deployment with the planner's
split for the scaled inputs (network namespaces joined by a tbf-shaped veth when root allows, else
the userspace relay), sweeps the offered Poisson rate (a common load, then multiples of the
policy's predicted Λ_max), and finds the highest sustainable throughput (sweep.py states the
criterion). On the prfaas deployment it then runs the bandwidth-fluctuation experiment (link cut
to a quarter in the middle). Writes experiment.json, experiment.md and PNG plots to --out-dir.
`--quick` is the smoke-test size (1 PrfaaS + 2 PD workers, time ×0.1, seconds per point).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from prfaas.tools.experiment import deploy, policy_report
from prfaas.tools.experiment.fluctuation import parse_schedule, run_fluctuation
from prfaas.tools.experiment.scale import Scale, predict
from prfaas.tools.experiment.sweep import Criterion, run_point
from prfaas.tools.loadgen.runner import warm_up
from prfaas.tools.loadgen.stage_stats import format_stage_table
from prfaas.topology.schema import EMULATED_KV_DTYPES, KV_COMPRESSIONS

POLICIES = ("prfaas", "homogeneous-pd", "naive-hetero")
QUICK = Scale(time_factor=0.1, output_tokens=4, decode_step_ms=1000.0, n_prfaas=1, n_pd=2,
              n_homogeneous=2)  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a("--out-dir", default="runs/experiment")
    a("--quick", action="store_true", help="smoke-test size: 3 workers, a few seconds per point")
    a("--policies", default=",".join(POLICIES))
    a("--time-factor", type=float, help="scale of profiled durations (default 1, quick 0.1)")
    a("--byte-factor", type=float, help="scale of KV bytes (default 0.01)")
    a("--link-gbps", type=float, help="link rate (default 1: the paper's 100 Gbps at ÷100 bytes)")
    a("--output-tokens", type=int, help="output tokens per request (default 32)")
    a("--decode-step-ms", type=float, help="decode step before the time factor (default 800)")
    a("--kv-dtype", choices=EMULATED_KV_DTYPES,
      help="the emulated KV's dtype (default uint8: opaque bytes; a float dtype lays it out as "
           "float rows of whole 64-element groups, which --kv-compression can encode)")  # fmt: skip
    a("--kv-compression", choices=KV_COMPRESSIONS,
      help="full-attention KV on the line (every worker; needs a float --kv-dtype; default none); "
           "the planner plans with the compressed bytes")  # fmt: skip
    a("--duration", type=float, help="seconds of arrivals per rate point (default 75, quick 6)")
    a("--multipliers", default="0.9,1.05,1.25", help="rate points: × each policy's predicted Λ")
    a("--stratify-block", type=int,
      help="draw input lengths stratified in blocks of this many requests, so every window of "
           "the run offers about the mean work (default 0: i.i.d. draws)")  # fmt: skip
    a("--rate-basis", choices=("planner", "work"), default="planner",
      help="the Λ that --multipliers, --common-factor and --fluct-rate-factor scale: the paper's "
           "(T_prefill at each class's mean length) or the work-conserving one (mean T_prefill "
           "per class, planner/work_conserving.py; lower where T_prefill is convex)")  # fmt: skip
    a("--common-factor", type=float, default=0.8,
      help="the common offered load: this × the smallest predicted Λ (TTFT comparison)")  # fmt: skip
    a("--no-netns", action="store_true", help="use the userspace relay even where root allows")
    a("--no-fluctuation", action="store_true")
    a("--no-sweep", action="store_true",
      help="skip the rate sweep: only the fluctuation run on the prfaas deployment")  # fmt: skip
    a("--fluct-rate-factor", type=float, default=0.9, help="× prfaas's predicted Λ")
    a("--fluct-rate", type=float,
      help="offered req/s of the fluctuation run (replaces --fluct-rate-factor: the same load "
           "for runs whose predicted Λ differs, e.g. with and without --kv-compression)")  # fmt: skip
    a("--fluct-duration", type=float, help="seconds of arrivals (default 180, quick 6)")
    a("--fluct-cut-fraction", type=float, default=0.25,
      help="link rate during the cut, as a fraction of --link-gbps")  # fmt: skip
    a("--fluct-schedule",
      help="link rate steps SECONDS:FACTOR[,...] as factors of --link-gbps (e.g. 60:0.25,360:1: "
           "a 4x drop held 5 minutes; 0:2: twice the configured rate from the start); replaces "
           "the cut at a third of --fluct-duration")  # fmt: skip
    a(
        "--reanalyze",
        action="store_true",
        help="recompute points, table and plots from --out-dir's raw results (no processes)",
    )
    a("--port-base", type=int, help="first port of the deployments (default 23000, quick 24000)")
    g = parser.add_argument_group("changing mix (issue 12 item 5; experiment/phased.py)")
    g.add_argument("--phases", help="run only the phased long-loop experiment: "
                   "DURATION:RATE:LONG_FRACTION[,...] (loadgen/phases.py)")  # fmt: skip
    g.add_argument("--phase-pd-roles", default="prefill,decode,decode", help="initial PD roles")
    g.add_argument("--phase-long-period", type=float, default=6.0, help="planner period (s)")
    g.add_argument("--phase-length-scale", type=float, default=1.0, help="× input lengths")


def _scale(args: argparse.Namespace) -> Scale:
    base = QUICK if args.quick else Scale()
    changes = {
        "time_factor": args.time_factor, "byte_factor": args.byte_factor,
        "link_gbps": args.link_gbps, "output_tokens": args.output_tokens,
        "decode_step_ms": args.decode_step_ms, "kv_dtype": args.kv_dtype,
        "kv_compression": args.kv_compression, "length_stratify_block": args.stratify_block,
    }  # fmt: skip
    from dataclasses import replace

    scale = replace(base, **{k: v for k, v in changes.items() if v is not None})
    if scale.kv_compression != "none" and scale.kv_dtype == "uint8":
        raise SystemExit("--kv-compression needs a float --kv-dtype (uint8 KV is not data)")
    return scale


LAMBDA_KEYS = {"planner": "lambda_max_rps", "work": "lambda_work_rps"}
"""--rate-basis: the prediction key whose Λ the rate factors scale."""


def _rates(
    policy: str, prediction: dict[str, Any], common: float, mults: list[float], basis: str
) -> list:
    lam = prediction["policies"][policy][LAMBDA_KEYS[basis]]
    return sorted({round(common, 3), *(round(m * lam, 3) for m in mults)})


def reanalyze(out: Path) -> dict[str, Any]:
    """Re-derive every point from raw/<policy>@<rate>.json with the current criterion."""
    from prfaas.tools.experiment.sweep import analyze
    from prfaas.tools.loadgen import Results

    doc = json.loads((out / "experiment.json").read_text())
    scale = Scale(**{k: v for k, v in doc["scale"].items() if k in Scale.__dataclass_fields__})
    for policy, points in doc["points"].items():
        for i, old in enumerate(points):
            raw = Results.load(out / "raw" / f"{policy}@{old['offered_rps']:.3f}.json")
            new = analyze(raw, old["offered_rps"], scale, Criterion())
            points[i] = {**new, "seed": old["seed"], "load_average": old["load_average"]}
    _finish(doc, doc["common_rate_rps"])
    return doc


def _finish(doc: dict[str, Any], common: float) -> None:
    doc["measured"] = {
        p: policy_report.summarize_policy(pts, common) for p, pts in doc["points"].items()
    }
    if "prfaas" in doc["measured"] and len(doc["measured"]) == 3:
        doc["ratios"] = policy_report.ratios(doc["measured"], doc["prediction"])


def run(args: argparse.Namespace) -> int:
    if args.phases:
        from prfaas.tools.experiment.phased_report import run_and_report

        return run_and_report(args)
    if args.reanalyze:
        doc = reanalyze(Path(args.out_dir))
        paths = policy_report.write(doc, Path(args.out_dir))
        print(paths["markdown"].read_text())
        return 0
    started = time.monotonic()
    scale = _scale(args)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    duration = args.duration or (6.0 if args.quick else 75.0)
    mults = [] if args.quick else [float(x) for x in args.multipliers.split(",") if x]
    port_base = args.port_base or (24000 if args.quick else 23000)
    why_not = "disabled by --no-netns" if args.no_netns else deploy.netns_available()
    netns = why_not is None
    _, prediction = predict(scale)
    lams = [prediction["policies"][p][LAMBDA_KEYS[args.rate_basis]] for p in policies]
    common = args.common_factor * min(lams)
    print(f"experiment: {'network namespaces + tbf veth' if netns else 'relay (' + str(why_not) + ')'}"
          f"; predicted Λ_max ({args.rate_basis}) " + ", ".join(f"{p} {lam:.3f}" for p, lam in zip(policies, lams,
          strict=True)) + f" req/s; common load {common:.3f} req/s", flush=True)  # fmt: skip
    crit = Criterion()
    doc = {
        "command": "prfaas experiment " + " ".join(sys.argv[2:]),
        "scale": scale.to_json(),
        "network": "netns" if netns else f"relay ({why_not})",
        "criterion": {**asdict(crit), "decode_step_s": scale.decode_step_s},
        "duration_per_point_s": duration,
        "common_rate_rps": common,
        "prediction": prediction,
        "points": {},
        "load_average": {"start": os.getloadavg()},
    }
    failed = 0
    for i, policy in enumerate(policies):
        running = deploy.start(policy, prediction, scale, out / "logs" / policy, netns=netns,
                               port_base=port_base + 1000 * (i % 2))  # fmt: skip
        try:
            warm_up(running.http, 2)
            points = []
            rates = (
                [] if args.no_sweep else _rates(policy, prediction, common, mults, args.rate_basis)
            )
            for j, rate in enumerate(rates):
                point, results = run_point(running, rate, duration, scale, 100 * i + j + 1, crit)
                point["load_average"] = os.getloadavg()
                results.save(out / "raw" / f"{policy}@{rate:.3f}.json")
                points.append(point)
                failed += point["failed"]
                print(f"  {policy} @ {rate:.3f}/s: throughput {point['throughput_rps']}, "
                      f"ratio {point['completion_ratio']}, sustainable {point['sustainable']}, "
                      f"TTFT mean {point['ttft_mean_s']}, load {point['load_average'][0]:.1f}",
                      flush=True)  # fmt: skip
                if results.stages:
                    print(format_stage_table(results.stages), flush=True)
            if points:
                doc["points"][policy] = points
            if policy == "prfaas" and not args.no_fluctuation:
                doc["fluctuation"] = _fluctuate(args, running, prediction, scale)
        finally:
            running.stop()
    _finish(doc, common)
    doc["load_average"]["end"] = os.getloadavg()
    doc["wall_s"] = time.monotonic() - started
    paths = policy_report.write(doc, out)
    print(paths["markdown"].read_text())
    print(json.dumps({k: str(v) for k, v in paths.items()}))
    fl_failed = doc.get("fluctuation", {}).get("failed", 0)
    return 1 if failed or fl_failed else 0


def _fluctuate(
    args: argparse.Namespace, running: deploy.Running, prediction: dict[str, Any], scale: Scale
) -> dict[str, Any] | None:
    if not running.netns:
        print("fluctuation: skipped (needs the namespace deployment to re-shape the link)")
        return None
    total = args.fluct_duration or (6.0 if args.quick else 180.0)
    rate = args.fluct_rate_factor * prediction["policies"]["prfaas"][LAMBDA_KEYS[args.rate_basis]]
    if args.quick:
        rate = 0.5 * rate
    if args.fluct_rate is not None:
        rate = args.fluct_rate
    steps = parse_schedule(args.fluct_schedule) if args.fluct_schedule else None
    load_start = os.getloadavg()
    fl = run_fluctuation(running, rate, total, scale, cut_at_s=total / 3, cut_for_s=total / 3,
                         cut_fraction=args.fluct_cut_fraction, steps=steps)  # fmt: skip
    fl["load_average"] = {"start": load_start, "end": os.getloadavg()}
    print(f"  fluctuation @ {rate:.3f}/s: failed {fl['failed']}, phases {fl['phases']}", flush=True)
    if fl.get("stages"):
        print(format_stage_table(fl["stages"]), flush=True)
    return fl
