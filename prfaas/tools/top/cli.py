"""`prfaas top`: a live terminal view of a running deployment, from its metrics endpoints.

Tooling: it reads only HTTP /metrics (the router's, which lists every worker as the router sees
it, and optionally workers' own), so it runs anywhere the router's HTTP port is reachable and no
serving package imports it.
"""

from __future__ import annotations

import argparse
import time

from rich.console import Console
from rich.live import Live

from prfaas.security.https import add_ca_file_argument, trust_ca_file
from prfaas.tools.top.poller import TopPoller
from prfaas.tools.top.render import render


def _named_url(value: str) -> tuple[str, str]:
    name, sep, url = value.partition("=")
    if not sep or not name or not url:
        raise argparse.ArgumentTypeError(
            f"expected NAME=URL (e.g. pd-0=http://127.0.0.1:9101/metrics), got {value!r}"
        )
    return name, url


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--router",
        default="http://127.0.0.1:8000",
        help="the router's HTTP address (host:port, its base URL or its /v1); default %(default)s",
    )
    parser.add_argument(
        "--worker-metrics",
        type=_named_url,
        action="append",
        default=[],
        metavar="NAME=URL",
        help="a worker's own /metrics (as `prfaas up --metrics-base-port` prints them), for its "
        "running/waiting requests, KV use and KV transfer failures; repeatable",
    )
    add_ca_file_argument(parser)
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes")
    parser.add_argument(
        "--once", action="store_true", help="print one frame (over one interval) and exit"
    )


def run(args: argparse.Namespace) -> int:
    trust_ca_file(args.ca_file)
    # A CA means HTTPS: a bare host:port then gets https://, not the default http://.
    router = (
        args.router if args.ca_file is None or "://" in args.router else f"https://{args.router}"
    )
    poller = TopPoller(router, dict(args.worker_metrics))
    console = Console()
    try:
        if args.once:
            poller.poll()  # the first scrape only anchors the window of the frame we print
            time.sleep(args.interval)
            snap = poller.poll()
            console.print(render(snap))
            return 0 if snap.router_up else 1
        with Live(render(poller.poll()), console=console, screen=False) as live:
            while True:
                time.sleep(args.interval)
                live.update(render(poller.poll()))
    except KeyboardInterrupt:
        return 0
    finally:
        poller.close()
