"""`prfaas plan`: size a PrfaaS-PD deployment with the paper's analytical model (Eqs. 1-8).

Inputs: a case TOML (`--case`, the case_study.toml format), optionally overridden piecewise:
`--workload` (a Mooncake JSONL trace; uncached lengths under an unbounded prefix cache),
`--prfaas-profile` / `--pd-profile` CSVs, `--link-gbps`, `--n-prfaas`, `--n-pd`, decode constants.
Output: `--json` prints one JSON object keyed by deployment; otherwise a table plus Fig. 5 PNGs.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from prfaas.data import case_study_file
from prfaas.planner.case import Case, DeploymentPlan, PlanResult, load_case, plan, policy_model
from prfaas.planner.profiles import BITS_PER_BYTE, load_profile_csv
from prfaas.planner.work_conserving import work_conserving_lambda
from prfaas.planner.workload import EmpiricalLengths, uncached_lengths_from_trace

# The paper's case study ships with the package, so `prfaas plan` with no argument plans it.
DEFAULT_CASE = case_study_file()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register `prfaas plan` options."""
    parser.add_argument(
        "--case",
        default=DEFAULT_CASE,
        help="case TOML (default: the paper's case study, shipped in prfaas/data)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object and exit")
    parser.add_argument("--out-dir", default="runs/plan", help="where the PNG plots go")
    parser.add_argument("--workload", help="Mooncake JSONL trace replacing the case's lengths")
    parser.add_argument("--block-size", type=int, default=512, help="tokens per trace hash_id")
    parser.add_argument("--prfaas-profile", help="CSV profile of one PrfaaS instance")
    parser.add_argument("--pd-profile", help="CSV profile of one PD instance")
    parser.add_argument("--link-gbps", type=float, help="PrfaaS egress bandwidth B_out (Gbps)")
    parser.add_argument("--n-prfaas", type=int, help="PrfaaS instances (prfaas/naive deployments)")
    parser.add_argument("--n-pd", type=int, help="PD instances of the prfaas/naive deployments")
    parser.add_argument("--decode-max-batch", type=int, help="BS_max per decode instance")
    parser.add_argument("--decode-step-seconds", type=float, help="T_decode at the SLO")
    parser.add_argument("--output-tokens", type=float, help="mean output length L_out")


def apply_overrides(case: Case, args: argparse.Namespace) -> Case:
    """Return the case with every override given on the command line applied."""
    if args.workload:
        lengths = uncached_lengths_from_trace(args.workload, args.block_size)
        case = replace(case, lengths=EmpiricalLengths.from_samples(lengths))
    if args.link_gbps is not None:
        case = replace(case, link_gbps=args.link_gbps)
    if args.output_tokens is not None:
        case = replace(case, output_tokens=args.output_tokens)
    if args.decode_max_batch is not None:
        case = replace(case, decode=replace(case.decode, max_batch=args.decode_max_batch))
    if args.decode_step_seconds is not None:
        case = replace(case, decode=replace(case.decode, step_seconds=args.decode_step_seconds))
    prfaas_prof = load_profile_csv(args.prfaas_profile) if args.prfaas_profile else None
    pd_prof = load_profile_csv(args.pd_profile) if args.pd_profile else None
    deployments = {}
    for name, dep in case.deployments.items():
        if pd_prof is not None:
            dep = replace(dep, pd_profile=pd_prof)
        if dep.policy != "homogeneous-pd":
            if prfaas_prof is not None:
                dep = replace(dep, prfaas_profile=prfaas_prof)
            if args.n_prfaas is not None:
                dep = replace(dep, n_prfaas=args.n_prfaas)
            if args.n_pd is not None:
                dep = replace(dep, n_pd=args.n_pd)
        deployments[name] = dep
    return replace(case, deployments=deployments)


def plan_to_json(case: Case, dp: DeploymentPlan) -> dict[str, float | int | None]:
    """The JSON contract of one deployment (keys fixed; a later check depends on them).

    `lambda_work_rps` is Eq. 6 at the same operating point with each prefill class's mean
    prefill *time* (planner/work_conserving.py): the rate no scheduler can exceed for the case's
    spread of lengths, where `lambda_max_rps` (the paper's, the time of the mean length) can."""
    pt = dp.point
    lambda_work = work_conserving_lambda(policy_model(case, dp.deployment), case.lengths, pt)
    return {
        "lambda_max_rps": pt.lambda_max,
        "lambda_work_rps": lambda_work,
        "n_prfaas": pt.n_prfaas,
        "n_prefill": pt.n_p,
        "n_decode": pt.n_d,
        "threshold_tokens": dp.threshold_tokens,
        "offload_fraction": pt.p,
        "egress_gbps": pt.egress_bytes_per_s * BITS_PER_BYTE / 1e9,
        "theta_prfaas_rps": pt.theta_prfaas,
        "theta_pd_prefill_rps": pt.theta_pd_prefill,
        "theta_pd_decode_rps": pt.theta_pd_decode,
    }


def format_table(result: dict[str, dict[str, float | int | None]]) -> str:
    """A fixed-width table: one row per deployment, plus Λ_max ratios against the others."""
    cols = ["lambda_max_rps", "lambda_work_rps", "n_prfaas", "n_prefill", "n_decode", "threshold_tokens",
            "offload_fraction", "egress_gbps", "theta_prfaas_rps", "theta_pd_prefill_rps",
            "theta_pd_decode_rps"]  # fmt: skip
    lines = ["deployment".ljust(22) + "".join(c[:16].rjust(17) for c in cols)]
    for name, row in result.items():
        cells = ["-" if row[c] is None else f"{row[c]:.4g}" for c in cols]
        lines.append(name.ljust(22) + "".join(c.rjust(17) for c in cells))
    for key, label in (("lambda_max_rps", "Λ_max"), ("lambda_work_rps", "Λ_work")):
        ours = result.get("prfaas_pd", {}).get(key)
        for name, row in result.items():
            theirs = row[key]
            if name != "prfaas_pd" and ours is not None and theirs:
                lines.append(f"prfaas_pd / {name}: {ours / theirs:.3f}x {label}")
    return "\n".join(lines)


def plan_rows(case: Case, result: PlanResult) -> dict[str, dict[str, float | int | None]]:
    """`plan_to_json` of every deployment in `result`, keyed by deployment name."""
    return {name: plan_to_json(case, dp) for name, dp in result.plans.items()}


def run(args: argparse.Namespace) -> int:
    """Plan every deployment; print JSON or a table and write plots. Returns the exit code."""
    case = apply_overrides(load_case(args.case), args)
    result = plan(case)
    out = plan_rows(case, result)
    if args.json:
        json.dump(out, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    print(format_table(out))
    from prfaas.planner.plots import write_fig5

    for name, dp in result.plans.items():
        if dp.grid is not None:
            for path in write_fig5(dp.grid, dp.point, Path(args.out_dir), name):
                print(f"wrote {path}")
    return 0
