"""`prfaas up [TOPOLOGY]`: start a whole deployment, print its endpoints, stop it on Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from prfaas.launcher.deployment import Deployment
from prfaas.launcher.topology import (
    BACKENDS,
    DEFAULT_TOPOLOGY,
    POLICIES,
    TopologyError,
    load_topology,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("topology", nargs="?", default=str(DEFAULT_TOPOLOGY), help="topology TOML")
    parser.add_argument("--backend", choices=BACKENDS, help="override the topology's backend")
    parser.add_argument("--policy", choices=POLICIES, help="override the topology's policy")
    parser.add_argument("--log-dir", default="runs/up/logs", help="one log file per process")
    parser.add_argument("--metrics-base-port", type=int, default=9400, help="worker /metrics ports")
    parser.add_argument(
        "--netns",
        action="store_true",
        help="place the two datacenters in network namespaces joined by a shaped veth (root)",
    )


def run(args: argparse.Namespace) -> int:
    path = Path(args.topology)
    try:
        topo = load_topology(path).with_overrides(backend=args.backend, policy=args.policy)
    except TopologyError as exc:
        print(f"prfaas up: {exc}", file=sys.stderr)
        return 2
    deployment = Deployment(
        topo, path, Path(args.log_dir), metrics_base_port=args.metrics_base_port, netns=args.netns
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(
        f"prfaas up: starting {topo.name} ({topo.backend} backend, policy {topo.policy})",
        flush=True,
    )
    try:
        endpoints = deployment.start()
    except (RuntimeError, TimeoutError, OSError) as exc:
        print(f"prfaas up: deployment failed to start: {exc}", file=sys.stderr)
        return 1
    print(f"  OpenAI endpoint: {endpoints.http}", flush=True)
    print(f"  router gRPC:     {endpoints.router_grpc}", flush=True)
    for url in endpoints.metrics:
        print(f"  metrics:         {url}", flush=True)
    print(f"  logs:            {args.log_dir}  (Ctrl-C stops everything)", flush=True)
    try:
        while not stop.wait(0.5):
            dead = deployment.supervisor.first_exited()
            if dead is not None:
                print(f"prfaas up: {dead.spec.name} exited; stopping", file=sys.stderr)
                print(deployment.supervisor.log_tail(dead), file=sys.stderr)
                return 1
    finally:
        deployment.stop()
        print("prfaas up: stopped", flush=True)
    return 0
