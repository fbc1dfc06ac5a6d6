"""The `prfaas` command: one subcommand per process or tool, each in the module that owns it.

Each target module exposes `add_arguments(parser)` and `run(args) -> int`; modules are imported
lazily so `prfaas plan` never pays for importing torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": (
        "prfaas.demo",
        "bring up the local two-datacenter deployment and serve a short workload",
    ),
    "up": ("prfaas.launcher.up", "start a whole deployment from a topology file"),
    "router": ("prfaas.router.main", "run the router (gRPC + OpenAI-style HTTP)"),
    "prefill-worker": ("prfaas.prefill_worker.main", "run a PrfaaS prefill worker"),
    "pd-worker": ("prfaas.pd_worker.main", "run a local PD worker (mixed, prefill or decode role)"),
    "plan": ("prfaas.planner.cli", "size clusters with the paper's analytical model (Eqs. 1-8)"),
    "certs": ("prfaas.security.certs_cli", "make a development CA and certificates for a topology"),
    "link": (
        "prfaas.kvtransfer.link_relay",
        "userspace TCP relay emulating a cross-datacenter link",
    ),
    "experiment": ("prfaas.experiment", "run the paper's case study end to end"),
    "chaos": ("prfaas.chaos.cli", "seeded, replayable faults under load (--soak: RSS/fd slopes)"),
}

# `prfaas bench TARGET`
BENCH_TARGETS: dict[str, tuple[str, str]] = {
    "model": ("prfaas.model.bench", "prefill/decode throughput of the hybrid model"),
    "transfer": ("prfaas.kvtransfer.bench", "KV transfer goodput and overlap"),
    "workers": ("prfaas.benchmarks.workers", "worker-level prefill/decode/transfer timings"),
    "serve": ("prfaas.loadgen.main", "open-loop load against the HTTP endpoint"),
}


def _add_lazy(sub: argparse._SubParsersAction, name: str, module: str, help_text: str) -> None:
    parser = sub.add_parser(name, help=help_text, description=help_text)
    parser.set_defaults(_module=module)
    importlib.import_module(module).add_arguments(parser)


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="prfaas", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    wanted = argv[0] if argv else None
    for name, (module, help_text) in COMMANDS.items():
        if name == wanted:
            _add_lazy(sub, name, module, help_text)
        else:
            sub.add_parser(name, help=help_text)
    bench = sub.add_parser("bench", help="benchmarks (model, transfer, workers, serve)")
    bench_sub = bench.add_subparsers(dest="target", required=True)
    bench_wanted = argv[1] if wanted == "bench" and len(argv) > 1 else None
    for name, (module, help_text) in BENCH_TARGETS.items():
        if name == bench_wanted:
            _add_lazy(bench_sub, name, module, help_text)
        else:
            bench_sub.add_parser(name, help=help_text)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv).parse_args(argv)
    return int(importlib.import_module(args._module).run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
