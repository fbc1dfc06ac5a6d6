"""`prfaas plan`: the planner's command (prfaas/planner/cli.py), plus `--simulate`.

The planner package must not import tooling (import-linter), so the simulator's SLO search
(prfaas/tools/sim/slo_search.py) is wired here: without `--simulate` this is exactly the planner's
command; with it, each deployment's analytical Λ_max is followed by the highest rate meeting the
SLO in simulation, at the planner's (t, N_p, N_d) and over a coarse search of them. The simulator
is imported only then, so a plain `prfaas plan` stays as light as before.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from prfaas.planner import cli as planner_cli


def add_arguments(parser: argparse.ArgumentParser) -> None:
    planner_cli.add_arguments(parser)
    a = parser.add_argument
    a("--simulate", action="store_true",
      help="also the highest rate meeting the SLO in simulation (prfaas sim), and a t / N_p search")  # fmt: skip
    a("--ttft-slo", type=float, default=10.0, help="P90 TTFT SLO, seconds (with --simulate)")
    a("--tpot-slo", type=float, help="mean TPOT SLO, seconds (default 1.5 × the decode step)")
    a("--sim-duration", type=float, default=600.0, help="simulated seconds of arrivals per run")
    a("--sim-iterations", type=int, default=6, help="bisection steps on the rate per point")
    a("--no-search", action="store_true", help="with --simulate: only the planner's point")


def run(args: argparse.Namespace) -> int:
    if not args.simulate:
        return planner_cli.run(args)
    from prfaas.planner.case import load_case, plan
    from prfaas.tools.sim.slo_search import Slo, plan_simulated

    case = planner_cli.apply_overrides(load_case(args.case), args)
    result = plan(case)
    slo = Slo(ttft_p90_s=args.ttft_slo, tpot_s=args.tpot_slo or 1.5 * case.decode.step_seconds)
    out = {}
    print(f"SLO: P90 TTFT <= {slo.ttft_p90_s} s, mean TPOT <= {slo.tpot_s * 1000:.1f} ms, "
          f">= {slo.min_completion:.0%} completed; {args.sim_duration:.0f} s per simulation, "
          f"{args.sim_iterations} bisection steps; coarse search (t × 0.5..2, N_p ± 2)")  # fmt: skip
    for name, dp in result.plans.items():
        doc = plan_simulated(case, dp, slo, duration_s=args.sim_duration,
                             iterations=args.sim_iterations, search=not args.no_search)  # fmt: skip
        out[name] = doc
        p = doc["planned"]
        line = (f"{name:22s} Λ_max {doc['lambda_max_rps']:.3f}/s at t={p['threshold']:.0f} "
                f"N_p/N_d={p['n_p']}/{p['n_d']}; SLO rate in simulation {p['slo_rate_rps']:.3f}/s")  # fmt: skip
        if p["slo_rate_rps"] == 0 and p["metrics"]:
            m = p["metrics"]
            line += f" (misses even at {m['rate_rps']:.2f}/s: P90 TTFT {m['ttft_p90_s']:.1f} s)"
        if "searched" in doc:
            s = doc["searched"]
            line += (f"; searched {s['candidates']} points: best {s['slo_rate_rps']:.3f}/s at "
                     f"t={s['threshold']:.0f} N_p/N_d={s['n_p']}/{s['n_d']}")  # fmt: skip
        print(line, flush=True)
    path = Path(args.out_dir) / "plan_simulated.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1, default=str))
    print(json.dumps({"json": str(path)}))
    return 0
