"""`prfaas sim`: the simulator from the command line.

Two modes:
- `--experiment`: the inputs of `prfaas experiment` (same scale flags, policies, rate points, the
  same requests per point, the link-cut run on prfaas) in simulation; writes the same
  experiment.json / experiment.md / throughput.png / fluctuation.png to --out-dir, in seconds.
- default: one deployment (the case study's split × `--instances-factor`) under one workload
  (`--workload lognormal|mooncake|azure`, `--rate` or the trace's timestamps) and a link schedule
  for `--duration` simulated seconds; writes sim.json (the analyzed point, egress windows,
  timeline, events/s, memory) and prints a summary.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from prfaas.planner import load_case, plan
from prfaas.tools.experiment import policy_report
from prfaas.tools.experiment.cli import LAMBDA_KEYS, QUICK
from prfaas.tools.experiment.fluctuation import _event_name, _phases, cut_window, parse_schedule
from prfaas.tools.experiment.scale import Scale, predict
from prfaas.tools.experiment.sweep import Criterion, analyze, workload_for
from prfaas.tools.loadgen.workloads import Scaling
from prfaas.tools.sim import projections
from prfaas.tools.sim import workload as sim_workload
from prfaas.tools.sim.analysis import egress_windows, to_results
from prfaas.tools.sim.case_inputs import case_config, case_requests
from prfaas.tools.sim.experiment_inputs import experiment_config
from prfaas.tools.sim.hops import decode_step_from_file, hops_from_file
from prfaas.tools.sim.link import LinkChange
from prfaas.tools.sim.schedule import parse_link_schedule
from prfaas.tools.sim.simulation import SimConfig, SimResult, Simulation

POLICIES = ("prfaas", "homogeneous-pd", "naive-hetero")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a("--out-dir", default="runs/sim")
    a("--seed", type=int, default=0)
    a("--experiment", action="store_true", help="simulate `prfaas experiment`'s inputs")
    a("--quick", action="store_true", help="with --experiment: its --quick scale")
    a("--policies", default=",".join(POLICIES))
    a("--time-factor", type=float)
    a("--byte-factor", type=float)
    a("--link-gbps", type=float)
    a("--output-tokens", type=int)
    a("--decode-step-ms", type=float)
    a("--duration", type=float, help="seconds of arrivals (experiment default 75, else 3600)")
    a("--multipliers", default="0.9,1.05,1.25")
    a("--common-factor", type=float, default=0.8)
    a("--rate-basis", choices=tuple(LAMBDA_KEYS), default="planner",
      help="the Λ the rate factors scale, as `prfaas experiment --rate-basis`")  # fmt: skip
    a(
        "--stratify-block",
        type=int,
        help="input lengths stratified in blocks of this many requests (`prfaas experiment`'s)",
    )
    a("--no-fluctuation", action="store_true")
    a("--fluct-rate-factor", type=float, default=0.9)
    a("--fluct-duration", type=float)
    a("--fluct-cut-fraction", type=float, default=0.25)
    a("--fluct-schedule", default="",
      help="link rate steps SECONDS:FACTOR[,...] as `prfaas experiment --fluct-schedule` (e.g. "
           "60:0.25,360:1: a 4x drop held 5 minutes); replaces the cut at a third")  # fmt: skip
    # single-deployment mode
    a("--policy", default="prfaas")
    a("--case", help="a case TOML (prfaas plan's format): that case at its own size and bytes")
    a("--instances-factor", type=int, default=1, help="× every instance count and the link")
    a("--rate", type=float, help="Poisson req/s (default: 0.9 × the planner's Λ_max)")
    a("--workload", default="lognormal", choices=("lognormal", "mooncake", "azure"))
    a("--trace", help="trace file for mooncake/azure")
    a("--limit", type=int, help="first N trace rows")
    a("--length-scale", type=float, default=1.0)
    a("--time-scale", type=float, default=1.0, help="trace clock × this (without --rate)")
    a("--link-schedule", default="", help="AT:FRACTION[:RTT_MS[:LOSS]],... (schedule.py)")
    a("--loss", type=float, default=0.0, help="segment loss rate of the line")
    a("--long-tick", type=float, help="run the long-term controller every this many seconds")
    a("--no-progress", action="store_true")
    a(
        "--hops-from",
        help="a recorded point's JSON (stages + requests): its per-request hop "
        "latencies (admission, first token, client), added to every request (hops.py)",
    )
    a(
        "--decode-step-from",
        help="a recorded point's JSON (requests): the decode step its workers really took (mean "
        "time per token after the first) for the simulated engines; the plan keeps the "
        "profile's (hops.py)",
    )
    # projections mode
    a("--projections", action="store_true", help="write the §2.3 projections (projections.py)")
    a("--projections-out", default="docs/projections.md")
    a("--projection-factors", default="16,104", help="× the case study's deployment, per row")
    a("--projection-duration", type=float, default=600.0, help="simulated seconds per row")
    a("--cut-factor", type=int, default=16, help="deployment × this for the 50 %% cut runs")


def _scale(args: argparse.Namespace) -> Scale:
    base = QUICK if args.quick else Scale()
    changes = {"time_factor": args.time_factor, "byte_factor": args.byte_factor,
               "link_gbps": args.link_gbps, "output_tokens": args.output_tokens,
               "decode_step_ms": args.decode_step_ms,
               "length_stratify_block": args.stratify_block}  # fmt: skip
    return replace(base, **{k: v for k, v in changes.items() if v is not None})


def with_recorded(cfg: SimConfig, args: argparse.Namespace) -> SimConfig:
    """The machine's constants from recorded runs (hops.py): --hops-from, the hop means on the
    decode engines and the client (relative to the profile's step); --decode-step-from, the
    step the engines take."""
    if args.hops_from:
        h = hops_from_file(args.hops_from, cfg.decode.step_s)
        decode = replace(cfg.decode, admit_hop_s=h.admit_s, first_token_hop_s=h.first_token_s)
        cfg = replace(cfg, decode=decode, client_hop_s=h.client_s)
    if args.decode_step_from:
        step = decode_step_from_file(args.decode_step_from)
        cfg = replace(cfg, decode=replace(cfg.decode, step_s=step))
    return cfg


def simulate_point(cfg: SimConfig, rate: float, duration: float, scale: Scale, seed: int,
                   progress: bool = False) -> tuple[dict[str, Any], SimResult]:  # fmt: skip
    """One `prfaas experiment` rate point: the same requests (workload_for), simulated."""
    wl, schedule = workload_for(rate, duration, scale, seed)
    result = Simulation(cfg, seed).run(sim_workload.from_workload(wl, schedule),
                                       progress=progress, label=f"{cfg.policy}@{rate:.2f} ")  # fmt: skip
    results = to_results(result)
    point = analyze(results, rate, scale, Criterion())
    point["seed"] = seed
    point["stages"] = results.stages
    point["sim_stats"] = {k: v for k, v in result.stats.items() if k != "prefill_busy_s"}
    return point, result


def _fluctuation(args: argparse.Namespace, prediction: dict[str, Any], scale: Scale,
                 quick: bool) -> dict[str, Any]:  # fmt: skip
    total = args.fluct_duration or (6.0 if quick else 180.0)
    rate = args.fluct_rate_factor * prediction["policies"]["prfaas"][LAMBDA_KEYS[args.rate_basis]]
    rate = 0.5 * rate if quick else rate
    if args.fluct_schedule:
        steps = parse_schedule(args.fluct_schedule)
        cut_at, cut_for = cut_window(steps, total)
        sched = tuple(LinkChange(at, factor) for at, factor in steps)
    else:
        cut_at, cut_for = total / 3, total / 3
        sched = (LinkChange(cut_at, args.fluct_cut_fraction), LinkChange(cut_at + cut_for, 1.0))
    cfg = with_recorded(experiment_config("prfaas", prediction, scale, link_schedule=sched), args)
    point, result = simulate_point(cfg, rate, total, scale, 777)
    requests = [{"send_s": r.arrival_s,
                 "ttft_s": None if r.first_token_s is None
                 else r.first_token_s - r.arrival_s + cfg.client_hop_s,
                 "ok": r.error is None, "input_tokens": r.input_tokens}
                for r in result.requests]  # fmt: skip
    events = [{"t_s": e["t_s"], "event": _event_name(e["capacity_fraction"]),
               "gbps": scale.link_gbps * e["capacity_fraction"], "ok": True}
              for e in result.link_events]  # fmt: skip
    return {
        "rate_rps": rate, "duration_s": total, "cut_at_s": cut_at, "cut_for_s": cut_for,
        "link_gbps": scale.link_gbps, "cut_gbps": scale.link_gbps * sched[0].capacity_fraction,
        "events": events, "samples": result.timeline, "requests": requests,
        "failed": point["failed"], "summary": {k: v for k, v in point.items() if k != "routing"},
        "phases": _phases(requests, cut_at, cut_for), "stages": point["stages"],
    }  # fmt: skip


def run_experiment(args: argparse.Namespace) -> dict[str, Any]:
    scale = _scale(args)
    duration = args.duration or (4.0 if args.quick else 75.0)
    mults = [] if args.quick else [float(x) for x in args.multipliers.split(",") if x]
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    _, prediction = predict(scale)
    lams = {p: prediction["policies"][p][LAMBDA_KEYS[args.rate_basis]] for p in policies}
    common = args.common_factor * min(lams.values())
    doc: dict[str, Any] = {
        "command": "prfaas sim " + " ".join(sys.argv[2:]),
        "simulated": True,
        "scale": scale.to_json(),
        "network": "simulated link",
        "criterion": {**Criterion().__dict__, "decode_step_s": scale.decode_step_s},
        "duration_per_point_s": duration,
        "common_rate_rps": common,
        "prediction": prediction,
        "points": {},
    }
    for i, policy in enumerate(policies):
        cfg = with_recorded(experiment_config(policy, prediction, scale), args)
        if args.hops_from:
            doc.setdefault("hops", {})[policy] = {
                "admit_s": cfg.decode.admit_hop_s, "first_token_s": cfg.decode.first_token_hop_s,
                "client_s": cfg.client_hop_s, "source": args.hops_from}  # fmt: skip
        if args.decode_step_from:
            doc.setdefault("decode_step", {})[policy] = {
                "step_s": cfg.decode.step_s, "source": args.decode_step_from}  # fmt: skip
        rates = sorted({round(common, 3), *(round(m * lams[policy], 3) for m in mults)})
        points = []
        for j, rate in enumerate(rates):
            point, _ = simulate_point(cfg, rate, duration, scale, 100 * i + j + 1)
            points.append(point)
            print(f"  {policy} @ {rate:.3f}/s: throughput {point['throughput_rps']}, TTFT mean "
                  f"{point['ttft_mean_s']}, offload {point['offload_fraction']}", flush=True)  # fmt: skip
        doc["points"][policy] = points
    if "prfaas" in policies and not args.no_fluctuation:
        doc["fluctuation"] = _fluctuation(args, prediction, scale, args.quick)
    doc["measured"] = {
        p: policy_report.summarize_policy(pts, common) for p, pts in doc["points"].items()
    }
    if "prfaas" in doc["measured"] and len(doc["measured"]) == 3:
        doc["ratios"] = policy_report.ratios(doc["measured"], doc["prediction"])
    return doc


def _requests(args: argparse.Namespace, scale: Scale, rate: float, duration: float) -> tuple:
    scaling = Scaling(length_scale=args.length_scale, output_tokens=scale.output_tokens,
                      max_input_tokens=scale.max_input_tokens)  # fmt: skip
    if args.workload == "lognormal":
        n = max(2, round(rate * duration))
        return sim_workload.lognormal(n, rate, max_tokens=scale.max_input_tokens,
                                      scaling=scaling, seed=args.seed), None  # fmt: skip
    if not args.trace:
        raise SystemExit(f"--workload {args.workload} needs --trace")
    scaling = replace(scaling, output_tokens=None)
    kw = {"limit": args.limit, "scaling": scaling, "rate": args.rate,
          "time_scale": args.time_scale, "seed": args.seed}  # fmt: skip
    if args.workload == "mooncake":
        return sim_workload.mooncake(args.trace, **kw)
    return sim_workload.azure(args.trace, **kw), None


def _case_inputs(args: argparse.Namespace, duration: float) -> tuple[SimConfig, list, float, float]:
    """--case: the planner's point for the deployment running `--policy`, × --instances-factor."""
    case = load_case(args.case)
    plans = {dp.deployment.policy: dp for dp in plan(case).plans.values()}
    if args.policy not in plans:
        raise SystemExit(f"--case {args.case}: no deployment with policy {args.policy!r}")
    dp = plans[args.policy]
    pt, k = dp.point, args.instances_factor
    cfg = case_config(case, dp.deployment, threshold=pt.threshold, n_p=pt.n_p, n_d=pt.n_d,
                      instances_factor=k, link_schedule=parse_link_schedule(args.link_schedule),
                      loss=args.loss)  # fmt: skip
    rate = args.rate or 0.9 * pt.lambda_max * k
    return cfg, case_requests(case, rate, duration, args.seed), rate, pt.lambda_max


def run_single(args: argparse.Namespace) -> dict[str, Any]:
    if args.case:
        return _run_case(args)
    scale = _scale(args)
    duration = args.duration or 3600.0
    _, prediction = predict(scale)
    lam = prediction["policies"][args.policy]["lambda_max_rps"]
    rate = args.rate or 0.9 * lam * args.instances_factor
    cfg = experiment_config(args.policy, prediction, scale,
                            instances_factor=args.instances_factor,
                            link_schedule=parse_link_schedule(args.link_schedule), loss=args.loss)  # fmt: skip
    requests, block = _requests(args, scale, rate, duration)
    if block is not None:
        cfg = replace(cfg, block_size=block)
    cfg = replace(with_recorded(cfg, args), long_tick_s=args.long_tick,
                  record_itl=len(requests) < 20000)  # fmt: skip
    result = Simulation(cfg, args.seed).run(requests, progress=not args.no_progress,
                                            until_s=None)  # fmt: skip
    point = analyze(to_results(result), rate, scale, Criterion())
    return _single_doc(args, result, point, rate, lam)


def _run_case(args: argparse.Namespace) -> dict[str, Any]:
    duration = args.duration or 3600.0
    cfg, requests, rate, lam = _case_inputs(args, duration)
    cfg = replace(cfg, long_tick_s=args.long_tick, record_itl=len(requests) < 20000)
    result = Simulation(cfg, args.seed).run(requests, progress=not args.no_progress)
    # analyze() reads the scale only for its decode-step ITL check: the case's step.
    scale = Scale(time_factor=1.0, decode_step_ms=cfg.decode.step_s * 1000)
    point = analyze(to_results(result), rate, scale, Criterion())
    return {"case": args.case, **_single_doc(args, result, point, rate, lam)}


def _single_doc(args: argparse.Namespace, result: SimResult, point: dict[str, Any], rate: float,
                lam: float) -> dict[str, Any]:  # fmt: skip
    return {
        "command": "prfaas sim " + " ".join(sys.argv[2:]),
        "policy": args.policy, "instances": result.stats["instances"], "offered_rps": rate,
        "planner_lambda_max_rps": lam * args.instances_factor,
        "point": point, "egress_windows_bytes_per_s": egress_windows(result),
        "stats": result.stats, "timeline": result.timeline, "link_events": result.link_events,
        "long_decisions": result.long_decisions,
    }  # fmt: skip


def run(args: argparse.Namespace) -> int:
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if args.projections:
        return run_projections(args)
    if args.experiment:
        doc = run_experiment(args)
        doc["wall_s"] = time.perf_counter() - started
        paths = policy_report.write(doc, out)
        print(paths["markdown"].read_text())
        print(json.dumps({k: str(v) for k, v in paths.items()}))
        return 0
    doc = run_single(args)
    doc["wall_s"] = time.perf_counter() - started
    (out / "sim.json").write_text(json.dumps(doc, indent=1, default=str))
    p, s, e = doc["point"], doc["stats"], doc["egress_windows_bytes_per_s"]
    print(f"{doc['policy']}: {doc['instances']} instances, offered {doc['offered_rps']:.2f} req/s "
          f"(planner Λ_max {doc['planner_lambda_max_rps']:.2f}); throughput {p['throughput_rps']}, "
          f"TTFT mean/P90 {p['ttft_mean_s']}/{p['ttft_p90_s']} s, offload {p['offload_fraction']}, "
          f"failed {p['failed']}; egress mean/P99 {e['mean']}/{e['p99']} B/s; "
          f"{s['events']} events in {s['wall_s']:.1f} s ({s['events_per_s']:.0f}/s), "
          f"peak RSS {s['peak_rss_bytes'] / 2**20:.0f} MiB")  # fmt: skip
    print(json.dumps({"json": str(out / "sim.json")}))
    return 0


def run_projections(args: argparse.Namespace) -> int:
    rows = []
    for factor in (int(x) for x in args.projection_factors.split(",") if x):
        for model in projections.MODELS:
            row, _ = projections.simulate(
                projections.Scenario(model, factor, args.projection_duration), args.seed
            )
            rows.append(row)
            print(json.dumps(row), flush=True)
    cuts = [projections.cut_cost(m, args.cut_factor, 300.0, 600.0, args.seed)
            for m in projections.MODELS]  # fmt: skip
    command = "prfaas sim " + " ".join(sys.argv[2:])
    text = projections.render(rows, cuts, command, args.projection_duration)
    out = Path(args.projections_out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    (Path(args.out_dir) / "projections.json").write_text(
        json.dumps({"command": command, "rows": rows, "cuts": cuts}, indent=1)
    )
    print(json.dumps({"markdown": str(out)}))
    return 0
