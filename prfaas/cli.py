"""The `prfaas` command: one subcommand per process or tool, each in the module that owns it.

Each target module exposes `add_arguments(parser)` and `run(args) -> int`; modules are imported
lazily so `prfaas plan` never pays for importing torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from importlib import metadata

from prfaas.cli_env import apply_env_defaults
from prfaas.config_error import ConfigError

# subcommand -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": (
        "prfaas.tools.demo",
        "the paper's point here: one offloaded request, then the policies at saturation",
    ),
    "up": ("prfaas.launcher.up", "start a whole deployment from a topology file"),
    "router": ("prfaas.router.main", "run the router (gRPC + OpenAI-style HTTP)"),
    "prefill-worker": ("prfaas.prefill_worker.main", "run a PrfaaS prefill worker"),
    "pd-worker": ("prfaas.pd_worker.main", "run a local PD worker (mixed, prefill or decode role)"),
    "plan": (
        "prfaas.tools.plan_cli",
        "size clusters with the paper's analytical model (Eqs. 1-8); --simulate: SLO rate",
    ),
    "certs": ("prfaas.security.certs_cli", "make a development CA and certificates for a topology"),
    "link": (
        "prfaas.link.relay",
        "userspace TCP relay emulating a cross-datacenter link",
    ),
    "experiment": ("prfaas.tools.experiment", "run the paper's case study end to end"),
    "sim": ("prfaas.tools.sim", "discrete-event simulation running the router's own decision code"),
    "chaos": (
        "prfaas.tools.chaos.cli",
        "seeded, replayable faults under load (--soak: RSS/fd slopes)",
    ),
    "top": (
        "prfaas.tools.top.cli",
        "live view of a running deployment: t, link, offloads, workers",
    ),
    "tokenizer": (
        "prfaas.tokenizer.cli",
        "export the default model's tokenizer directory (for AutoTokenizer and benchmark clients)",
    ),
}

# `prfaas bench TARGET`
BENCH_TARGETS: dict[str, tuple[str, str]] = {
    "model": ("prfaas.tools.benchmarks.model", "prefill/decode throughput of the hybrid model"),
    "transfer": ("prfaas.tools.benchmarks.transfer", "KV transfer goodput and overlap"),
    "workers": ("prfaas.tools.benchmarks.workers", "worker-level prefill/decode/transfer timings"),
    "serve": ("prfaas.tools.loadgen.main", "open-loop load against the HTTP endpoint"),
    "router": (
        "prfaas.tools.benchmarks.router_overhead",
        "the router's own added latency per request",
    ),
    "router-replicas": (
        "prfaas.tools.benchmarks.router_replicas",
        "requests per second of one router process vs two replicas; decode-seat over-admission",
    ),
    "router-security": (
        "prfaas.tools.benchmarks.router_security_cost",
        "latency mTLS + HTTPS + API key add through the router process, vs plain",
    ),
}


# What `prfaas --help` shows a user (the module docstring above is for developers).
USER_HELP = """\
prfaas serves a hybrid-attention language model across two datacenters: long prompts are
prefilled in a remote compute-dense PrfaaS cluster and their KV cache streams to the local
prefill/decode cluster, which decodes; short prompts stay local.

Start here:
  prfaas demo                 the paper's point on this machine in a few minutes
  prfaas up                   a whole local deployment (OpenAI endpoint on :8000); Ctrl-C stops it
  prfaas bench serve          load against a running deployment
  prfaas top                  live view of a running deployment (router's /metrics)
  prfaas plan                 size clusters with the paper's analytical model

Every option can also be set by an environment variable PRFAAS_<COMMAND>_<OPTION>, e.g.
PRFAAS_UP_LOG_DIR=/tmp/logs; `prfaas COMMAND --help` names each one.
"""


def _version() -> str:
    try:
        return f"prfaas {metadata.version('prfaas')}"
    except metadata.PackageNotFoundError:  # a source tree that was never installed
        return "prfaas (not installed)"


def _add_lazy(
    sub: argparse._SubParsersAction, name: str, module: str, help_text: str, command: str
) -> None:
    parser = sub.add_parser(name, help=help_text, description=help_text)
    parser.set_defaults(_module=module)
    importlib.import_module(module).add_arguments(parser)
    apply_env_defaults(parser, command)


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="prfaas", description=USER_HELP, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True)
    wanted = argv[0] if argv else None
    for name, (module, help_text) in COMMANDS.items():
        if name == wanted:
            _add_lazy(sub, name, module, help_text, name)
        else:
            sub.add_parser(name, help=help_text)
    bench = sub.add_parser("bench", help="benchmarks (model, transfer, workers, serve)")
    bench_sub = bench.add_subparsers(dest="target", required=True)
    bench_wanted = argv[1] if wanted == "bench" and len(argv) > 1 else None
    for name, (module, help_text) in BENCH_TARGETS.items():
        if name == bench_wanted:
            _add_lazy(bench_sub, name, module, help_text, f"bench {name}")
        else:
            bench_sub.add_parser(name, help=help_text)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser(argv).parse_args(argv)
        return int(importlib.import_module(args._module).run(args) or 0)
    except ConfigError as exc:
        # A topology file or options the user must fix: the message names the key; no traceback.
        print(f"prfaas {argv[0] if argv else ''}: {exc}".replace("  ", " "), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # Ctrl-C before a command installs its own handling (imports, parsing) or in one that has
        # none: one line, no traceback. Commands that start processes stop them in `finally`.
        print(f"prfaas {argv[0] if argv else ''}: interrupted".replace("  ", " "), file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
