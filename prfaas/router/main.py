"""`prfaas router`: the router process (HTTP front end, gRPC `Router`, registry, control loops).

Lifecycle of `run()` (one event loop, uvloop when available):
  1. load the topology, apply command-line overrides, register its workers (none with
     `--workers registered`: every worker joins by `RegisterWorker`, e.g. on Kubernetes);
  2. build the prefix index, registry, controllers, dispatcher, HTTP app and gRPC server;
  3. start the registry monitors and control loops, then serve gRPC and HTTP (uvicorn on the
     same loop); `/ready` turns true once the policy's needed workers answer heartbeats;
  4. on SIGTERM/SIGINT: stop accepting (HTTP exits, gRPC stops with a grace period), stop the
     loops and monitors, wait for outstanding Abort RPCs, return 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import uvicorn
from prometheus_client import CollectorRegistry

from prfaas import tracing
from prfaas._proto.prfaas.v1 import router_pb2_grpc
from prfaas.data import tokenizer_dir
from prfaas.log_setup import add_logging_arguments, configure_logging
from prfaas.metrics import RouterMetrics, TransferMetrics
from prfaas.router.control import LongTermController, ShortTermConfig, ShortTermController
from prfaas.router.control_loops import ControlLoops
from prfaas.router.dispatcher import DispatchConfig, Dispatcher
from prfaas.router.link_health import LinkHealth
from prfaas.router.openai_text import Tokenizer
from prfaas.router.planner_leadership import WorkerArbitratedLeadership, router_holder_id
from prfaas.router.policy import RoutingConfig
from prfaas.router.prefix_index import PrefixIndex
from prfaas.router.registry import WorkerRegistry, handles_from_topology
from prfaas.router.service import RouterService
from prfaas.router.view_metrics import RouterViewCollector
from prfaas.security import channels, identities
from prfaas.security.api_keys import ApiKeys
from prfaas.security.binding import bind_grpc
from prfaas.security.credentials import GrpcCredentials
from prfaas.security.https import HttpsFiles, https_from_args
from prfaas.security.interceptor import AuthInterceptor
from prfaas.security.options import (
    add_security_arguments,
    api_keys_from_args,
    credentials_from_args,
)
from prfaas.tokenizer.byte_level import BytePromptTokenizer
from prfaas.topology import DEFAULT_TOPOLOGY, POLICIES, Topology, load_topology

log = logging.getLogger("prfaas.router")

GRPC_GRACE_S = 5.0
LEASE_PERIODS = 3
"""The planner lease lives this many long-term periods: a dead leader's replica takes over within
that time; a live leader renews it every period (planner_leadership.py)."""
"""Seconds in-flight gRPC calls get to finish at shutdown."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--topology", default=str(DEFAULT_TOPOLOGY), help="topology TOML file")
    parser.add_argument("--policy", choices=POLICIES, help="routing policy (default: topology)")
    parser.add_argument("--host", help="listen address (default: topology host)")
    parser.add_argument("--http-port", type=int, help="OpenAI HTTP port (default: topology)")
    parser.add_argument("--grpc-port", type=int, help="gRPC Router port (default: topology)")
    parser.add_argument("--threshold", type=int, help="initial routing threshold t in tokens")
    parser.add_argument(
        "--api-key",
        help="require this bearer token on /v1/* (visible in ps: prefer --api-key-file)",
    )
    parser.add_argument("--model-name", help="served model id (default: prfaas-<preset>)")
    parser.add_argument(
        "--model",
        help="Hugging Face checkpoint directory the workers serve: its tokenizer, chat template, "
        "EOS ids and name (default: the topology's `model`, else the byte-level tokenizer)",
    )
    parser.add_argument(
        "--max-context",
        type=int,
        default=DispatchConfig.max_context,
        help="context limit in tokens until a worker reports its own (WorkerLoad.max_context; "
        "then the smallest the healthy workers report)",
    )
    parser.add_argument(
        "--max-inflight", type=int, default=512, help="admitted requests at once (more: 429)"
    )
    parser.add_argument(
        "--workers",
        choices=("topology", "registered"),
        default="topology",
        help="topology: start knowing the topology's workers; registered: start empty, every "
        "worker joins with RegisterWorker (the topology still gives policy, ports and link)",
    )
    add_logging_arguments(parser)
    add_security_arguments(parser, router=True)


def _served_model(topo: Topology, model_dir: str | None) -> tuple[Tokenizer, str | None]:
    """(tokenizer, default model name): a checkpoint directory's own tokenizer and its directory's
    name (as its workers report it), or the byte-level tokenizer and no name (prfaas-<preset>)."""
    model_dir = model_dir or getattr(topo, "model", "")
    if not model_dir:
        return BytePromptTokenizer(), None
    from prfaas.tokenizer.hf_tokenizer import HFTokenizer

    return HFTokenizer(model_dir), Path(model_dir).resolve().name


def _tokenizer_dir(topo: Topology, model_dir: str | None) -> Path:
    """Where the served model's tokenizer files are: the checkpoint's own directory, or the
    shipped directory of the byte-level model (`prfaas tokenizer export` writes the same)."""
    model_dir = model_dir or getattr(topo, "model", "")
    return Path(model_dir) if model_dir else tokenizer_dir()


def _long_term(topo: Topology) -> LongTermController | None:
    """The planner-driven controller, when the topology names prefill profiles to plan with."""
    if not (topo.emulated_profile_pd and topo.emulated_profile_prfaas):
        log.info("long-term control off: the topology names no prefill profiles")
        return None
    from prfaas.planner.profiles import DecodeProfile, load_profile_csv
    from prfaas.planner.search import ClusterModel
    from prfaas.router.control.long_term import WINDOW_PERIODS, LongTermConfig

    model = ClusterModel(
        pd_profile=load_profile_csv(topo.emulated_profile_pd), decode=DecodeProfile(),
        output_tokens=256.0, n_pd=len(topo.pd_roles), n_prfaas=topo.prfaas_workers,
        prfaas_profile=load_profile_csv(topo.emulated_profile_prfaas),
        link_bytes_per_s=topo.link.rate_gbps * 1e9 / 8,
    )  # fmt: skip
    # The statistics window follows the planner's period (600 s at the default 30 s), so a
    # deployment that re-plans faster also forgets an old mix faster.
    window = WINDOW_PERIODS * topo.long_control_seconds
    return LongTermController(model, LongTermConfig(window_s=window))


class _HttpServer(uvicorn.Server):
    """uvicorn's server without its signal capture: the router owns SIGTERM/SIGINT (uvicorn would
    otherwise re-raise them after serving)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class RouterProcess:
    """Everything the router process owns, built by `build()`."""

    topo: Topology
    registry: WorkerRegistry
    dispatcher: Dispatcher
    loops: ControlLoops
    metrics: RouterMetrics


def build(
    topo: Topology,
    model_name: str | None = None,
    max_context: int = DispatchConfig.max_context,
    max_inflight: int = 512,
    topology_workers: bool = True,
) -> RouterProcess:
    """Wire the components for `topo` (no I/O; the caller starts them). `topology_workers`
    False: the registry starts empty and workers join by `RegisterWorker`."""
    metrics = RouterMetrics(CollectorRegistry(), model_name or f"prfaas-{topo.model_preset}")
    transfer_metrics = TransferMetrics(metrics.registry)
    registry = WorkerRegistry(PrefixIndex(topo.block_size))
    for handle in handles_from_topology(topo) if topology_workers else ():
        registry.add(handle)
    long = _long_term(topo)
    link_bytes = topo.link.rate_gbps * 1e9 / 8
    routing = RoutingConfig(policy=topo.policy, local_cluster=topo.pd_cluster,
                            prfaas_cluster=topo.prfaas_cluster)  # fmt: skip
    config = DispatchConfig(model_name=metrics.model_name, max_context=max_context,
                            routing=routing, link_bytes_per_s=link_bytes,
                            max_inflight=max_inflight)  # fmt: skip
    # t stops rising, and then falls, as the local prefill waits near the dispatcher's budget.
    short = ShortTermController(float(topo.threshold_tokens),
                                ShortTermConfig(local_wait_budget_s=config.max_prefill_wait_s))  # fmt: skip
    metrics.registry.register(RouterViewCollector(registry, short))
    # Offloads skip a decode worker whose link (relay or receiver) is down, until probed back.
    dispatcher = Dispatcher(registry, short, config, long, metrics, LinkHealth(registry))
    loops = ControlLoops(registry, short, link_bytes, topo.prfaas_cluster, topo.pd_cluster,
                         long, metrics, transfer_metrics, long_tick_s=topo.long_control_seconds,
                         kv=dispatcher.kv, recent_arrivals=dispatcher.recent_arrivals,
                         default_prefill_tokens_per_s=config.default_prefill_tokens_per_s,
                         leadership=WorkerArbitratedLeadership(
                             registry, topo.pd_cluster, router_holder_id(),
                             ttl_s=LEASE_PERIODS * topo.long_control_seconds))  # fmt: skip
    return RouterProcess(topo, registry, dispatcher, loops, metrics)


async def serve(
    topo: Topology,
    api_key: str | ApiKeys | None,
    model_name: str | None,
    max_inflight: int = 512,
    credentials: GrpcCredentials | None = None,
    insecure: bool = False,
    topology_workers: bool = True,
    model_dir: str | None = None,
    https: HttpsFiles | None = None,
    max_context: int = DispatchConfig.max_context,
) -> int:
    """`credentials`: the router's gRPC server identity, also the one its channels to workers
    present (`channels.configure` must have been given them before the registry opens any).
    `https`: serve the HTTP port (`/v1/*`, `/metrics`, `/ready`) over TLS with these files."""
    from prfaas.router.http_api import create_app

    tracing.configure("prfaas-router")  # spans only when the environment asks (prfaas/tracing.py)

    api_keys = ApiKeys.of(api_key)
    tokenizer, checkpoint_name = _served_model(topo, model_dir)
    proc = build(topo, model_name or checkpoint_name, max_context, max_inflight, topology_workers)
    app = create_app(proc.dispatcher, tokenizer, api_key=api_keys, metrics=proc.metrics,
                     tokenizer_dir=_tokenizer_dir(topo, model_dir))  # fmt: skip
    grpc_server = grpc.aio.server(interceptors=[AuthInterceptor(credentials, api_keys)])
    router_pb2_grpc.add_RouterServicer_to_server(
        RouterService(proc.dispatcher, proc.registry, vocab_size=tokenizer.vocab_size), grpc_server
    )
    grpc_address = f"{topo.host}:{topo.router_grpc_port}"
    bind_grpc(grpc_server, grpc_address, credentials, insecure=insecure)
    config = uvicorn.Config(app, host=topo.host, port=topo.http_port, lifespan="off",
                            log_level="warning", timeout_graceful_shutdown=5,
                            **(https.uvicorn_options() if https else {}))  # fmt: skip
    http = _HttpServer(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: setattr(http, "should_exit", True))
    if api_keys is not None:
        loop.add_signal_handler(signal.SIGHUP, api_keys.reload)  # revoke/add keys, no restart

    await proc.registry.start()
    proc.loops.start()
    await grpc_server.start()
    log.info("router: policy=%s %s://%s:%d grpc %s:%d, %d workers", topo.policy,
             "https" if https else "http", topo.host, topo.http_port, topo.host,
             topo.router_grpc_port, len(proc.registry.workers))  # fmt: skip
    try:
        await http.serve()
    finally:
        log.info("router shutting down")
        await grpc_server.stop(GRPC_GRACE_S)
        await proc.loops.stop()
        await proc.registry.stop()
        await proc.dispatcher.close()
        if proc.dispatcher.links is not None:
            await proc.dispatcher.links.close()
    return 0


def run(args: argparse.Namespace) -> int:
    configure_logging(args)
    topo = load_topology(args.topology).with_overrides(
        policy=args.policy, host=args.host, http_port=args.http_port,
        router_grpc_port=args.grpc_port, threshold_tokens=args.threshold,
    )  # fmt: skip
    credentials = credentials_from_args(args, lambda: identities.ROUTER)
    channels.configure(credentials)
    coro = serve(topo, api_keys_from_args(args), args.model_name, args.max_inflight,
                 credentials, args.insecure, args.workers == "topology",
                 args.model, https_from_args(args), args.max_context)  # fmt: skip
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)
