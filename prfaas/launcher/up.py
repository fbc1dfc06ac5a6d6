"""`prfaas up [TOPOLOGY]`: start a whole deployment, keep it healing, stop it on Ctrl-C.

Lifecycle:
  1. start the processes group by group (deployment.py); Ctrl-C or SIGTERM meanwhile stops what
     was started and exits 130;
  2. print the endpoints (HTTP, router gRPC, metrics, each relay's control port);
  3. supervise: a child that dies is restarted with backoff and rejoins (supervisor.py); the rest
     keep serving meanwhile;
  4. what ends the deployment: the operator's SIGINT/SIGTERM (exit 0), the router exiting on its
     own with status 0, or a child crash-looping (exit 1, with the reason and its log tail);
     every child is then stopped and the restart count of each is printed.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from prfaas.launcher.deployment import Deployment
from prfaas.launcher.restart_policy import RestartPolicy
from prfaas.launcher.supervisor import StartInterrupted
from prfaas.log_setup import LOG_FORMATS
from prfaas.topology import (
    BACKENDS,
    DEFAULT_TOPOLOGY,
    POLICIES,
    TopologyError,
    load_topology,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # Secure by default: every child gets a per-deployment gRPC token (or certificates) by file.
    parser.add_argument(
        "--tls",
        action="store_true",
        help="mutual TLS on gRPC and the KV channel, HTTPS on the router (dev CA)",
    )
    parser.add_argument(
        "--api-key-file",
        help="API keys for /v1/* and Router.Generate (one per line, mode 0600). There is no "
        "--api-key: a secret on the command line is visible to every user in ps and lands in "
        "shell history (docs/security.md)",
    )
    parser.add_argument(
        "--secure",
        action="store_true",
        help="--tls plus HTTPS on the router and a generated API key (unless --api-key-file), "
        "written to a 0600 file whose path is printed",
    )
    parser.add_argument("topology", nargs="?", default=str(DEFAULT_TOPOLOGY), help="topology TOML")
    parser.add_argument("--backend", choices=BACKENDS, help="override the topology's backend")
    parser.add_argument("--policy", choices=POLICIES, help="override the topology's policy")
    parser.add_argument(
        "--model", help="serve this Hugging Face checkpoint directory (Qwen3.5 text) everywhere"
    )
    parser.add_argument(
        "--checkpoint",
        help="serve this prfaas safetensors checkpoint (its HybridConfig inside, as "
        "prfaas.model.checkpoint.save_checkpoint writes it) on every worker; torch backend",
    )
    parser.add_argument("--log-dir", default="runs/up/logs", help="one log file per process")
    parser.add_argument(
        "--log-level", default="INFO", help="every process's log level (DEBUG | INFO | WARNING)"
    )
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default="text",
        help="every process's log lines: text, or json (one object per line, with request_id)",
    )
    parser.add_argument("--metrics-base-port", type=int, default=9400, help="worker /metrics ports")
    parser.add_argument(
        "--netns",
        action="store_true",
        help="place the two datacenters in network namespaces joined by a shaped veth (root)",
    )
    defaults = RestartPolicy()
    parser.add_argument(
        "--max-restarts",
        type=int,
        default=defaults.crash_loop_restarts,
        help="restarts of one process within --restart-window before giving up (crash loop)",
    )
    parser.add_argument(
        "--restart-window",
        type=float,
        default=defaults.crash_loop_window_s,
        help="seconds over which --max-restarts is counted",
    )


def _print_endpoints(deployment: Deployment, log_dir: str) -> None:
    endpoints = deployment.endpoints()
    print(f"  OpenAI endpoint: {endpoints.http}  (router)", flush=True)
    print(f"  router gRPC:     {endpoints.router_grpc}", flush=True)
    for name, url in zip(endpoints.metrics_processes, endpoints.metrics, strict=True):
        print(f"  metrics:         {url}  ({name})", flush=True)
    for name, address in endpoints.relay_controls.items():
        print(f"  relay control:   {address}  ({name}: cut | stall on|off | down | up)", flush=True)
    secrets = deployment.secrets
    if secrets.ca_file is not None:
        print(f"  trust (CA):      {secrets.ca_file}  (curl --cacert)", flush=True)
    if secrets.api_key_file is not None:
        print(f"  API key file:    {secrets.api_key_file}  (Authorization: Bearer)", flush=True)
    print(f"  logs:            {log_dir}  (Ctrl-C stops everything)", flush=True)


def build_deployment(args: argparse.Namespace) -> Deployment:
    """The deployment the options describe, not started; raises TopologyError for a bad topology
    or a bad combination of options."""
    path = Path(args.topology)
    model = str(Path(args.model).resolve()) if args.model else None
    topo = load_topology(path)
    # The topology's [security] section, with what the options turn on.
    security = topo.security.with_options(
        tls=args.tls, secure=args.secure, api_key_file=args.api_key_file
    )
    topo = topo.with_overrides(
        backend=args.backend, policy=args.policy, model=model, security=security
    )
    worker_args: tuple[str, ...] = ()
    if args.checkpoint:
        checkpoint = Path(args.checkpoint).resolve()
        if topo.backend != "torch":
            raise TopologyError(
                "--checkpoint needs the torch backend (the emulated one has no weights)"
            )
        if topo.model:
            raise TopologyError(
                "--checkpoint and --model (or the topology's model) exclude each other"
            )
        if not checkpoint.is_file():
            raise TopologyError(f"--checkpoint {checkpoint}: no such file")
        worker_args = ("--checkpoint", str(checkpoint))
    return Deployment(
        topo, path, Path(args.log_dir), metrics_base_port=args.metrics_base_port, netns=args.netns,
        child_args=("--log-level", args.log_level, "--log-format", args.log_format),
        worker_args=worker_args,
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    try:
        deployment = build_deployment(args)
    except TopologyError as exc:
        print(f"prfaas up: {exc}", file=sys.stderr)
        return 2
    topo = deployment.topo
    supervisor = deployment.supervisor
    stop = threading.Event()

    def on_signal(*_: object) -> None:
        stop.set()
        supervisor.request_stop()  # interrupts a start in progress

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    print(
        f"prfaas up: starting {topo.name} ({topo.backend} backend, policy {topo.policy})",
        flush=True,
    )
    policy = RestartPolicy(
        crash_loop_restarts=args.max_restarts, crash_loop_window_s=args.restart_window
    )
    try:
        deployment.start(supervise=True, restart_policy=policy)
    except StartInterrupted:
        print("prfaas up: interrupted while starting; stopped", file=sys.stderr)
        return 130
    except (RuntimeError, TimeoutError, OSError) as exc:
        print(f"prfaas up: deployment failed to start: {exc}", file=sys.stderr)
        return 1
    _print_endpoints(deployment, args.log_dir)
    try:
        while not stop.wait(0.5):
            if supervisor.ended.is_set():
                print(f"prfaas up: {supervisor.end_reason}", file=sys.stderr, flush=True)
                return 0 if supervisor.ended_cleanly else 1
    finally:
        restarts = ", ".join(f"{name} {n}" for name, n in supervisor.summary().items())
        deployment.stop()
        print(f"prfaas up: stopped (restarts: {restarts})", flush=True)
    return 0
