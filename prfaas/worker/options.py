"""Command-line options shared by both worker processes, and building an engine from them."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from prfaas.engine.core import EngineCore
from prfaas.engine.execution_backend import ExecutionBackend
from prfaas.engine.prefix_cache import CacheListener
from prfaas.log_setup import add_logging_arguments
from prfaas.security.options import add_security_arguments
from prfaas.security.secret_files import read_secret
from prfaas.worker.compute import LayerHooks

SECRET_ENV = "PRFAAS_KV_SECRET"


def add_common_arguments(parser: argparse.ArgumentParser, *, default_port: int) -> None:
    add_logging_arguments(parser)
    parser.add_argument("--worker-id", required=True, help="unique id, e.g. prfaas-0 or pd-1")
    parser.add_argument("--cluster", default="", help="datacenter / cluster name")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind")
    parser.add_argument("--grpc-port", type=int, default=default_port)
    parser.add_argument("--metrics-port", type=int, default=0, help="Prometheus port (0: off)")
    parser.add_argument("--backend", choices=("torch", "emulated"), default="torch")
    parser.add_argument("--preset", default="small", help="model preset (torch backend)")
    parser.add_argument("--checkpoint", default="", help="safetensors checkpoint (torch backend)")
    parser.add_argument(
        "--model",
        default="",
        help="Hugging Face checkpoint directory (Qwen3.5 text; torch backend; overrides --preset)",
    )
    parser.add_argument(
        "--model-dtype", default="", help="float32 | bfloat16 (default: the checkpoint's dtype)"
    )
    parser.add_argument("--device", default="auto", help="cuda | cpu | auto")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default 1)")
    parser.add_argument("--cache-budget-mb", type=float, default=512.0)
    parser.add_argument("--block-size", type=int, default=256)
    parser.add_argument("--max-batched-tokens", type=int, default=2048)
    parser.add_argument(
        "--max-num-seqs", type=int, default=64, help="most requests running at once (BS_max)"
    )
    parser.add_argument("--profile", default="", help="emulated backend: profile CSV")
    parser.add_argument("--time-factor", type=float, default=0.1, help="emulated: time scale")
    parser.add_argument("--byte-factor", type=float, default=1e-3, help="emulated: byte scale")
    parser.add_argument("--decode-step-ms", type=float, default=25.0, help="emulated: decode step")
    parser.add_argument("--kv-connections", type=int, default=4, help="TCP connections per peer")
    parser.add_argument("--kv-chunk-mib", type=float, default=4.0, help="KV transfer chunk size")
    parser.add_argument(
        "--kv-compression",
        choices=("none", "fp8", "int8"),
        default="none",
        help="full-attention KV on the line: fp8 e4m3 or int8 with per-64-element scales (torch "
        "backend; every worker of a deployment must agree, see docs/kv-wire-format.md)",
    )
    parser.add_argument(
        "--router",
        default="",
        help="router gRPC address(es) to register with, comma-separated; a name resolving to "
        "several addresses (a headless Service) registers with every router replica",
    )
    parser.add_argument(
        "--grpc-advertise", default="", help="gRPC address routers should use (default host:port)"
    )
    parser.add_argument(
        "--kv-link-advertise",
        default="",
        help="KV address senders in the other cluster use (default: the KV advertise address)",
    )
    parser.add_argument(
        "--register-interval-s",
        type=float,
        default=2.0,
        help="re-register this often (keepalive; a restarted router relearns the worker)",
    )
    parser.add_argument(
        "--drain-timeout-s",
        type=float,
        default=30.0,
        help="on SIGTERM, wait this long for in-flight requests before aborting them",
    )
    parser.add_argument(
        "--link-gbps",
        type=float,
        default=0.0,
        help="nominal KV link rate, for utilization (0: unknown)",
    )
    add_security_arguments(parser, router=False)


def kv_secret(args: argparse.Namespace | None = None) -> bytes:
    """Shared secret for KV transfer authentication: `--kv-secret-file` (mode 0600); else the
    deprecated $PRFAAS_KV_SECRET (visible in /proc/PID/environ); else a fixed dev default."""
    path = getattr(args, "kv_secret_file", None)
    if path:
        try:
            return read_secret(path)
        except ValueError as exc:
            raise SystemExit(f"--kv-secret-file: {exc}") from exc
    return os.environ.get(SECRET_ENV, "prfaas-dev-secret").encode()


def build_backend(args: argparse.Namespace) -> tuple[ExecutionBackend, int | None, int]:
    """Returns (backend, eos_token_id, max_context)."""
    if args.backend == "emulated":
        from prfaas.engine.backend_emulated import EmulatedBackend
        from prfaas.planner.profiles import PrefillProfile

        if not args.profile:
            raise SystemExit("--backend emulated needs --profile CSV")
        if getattr(args, "kv_compression", "none") != "none":
            raise SystemExit("--kv-compression needs the torch backend (emulated KV is not data)")
        backend = EmulatedBackend(
            PrefillProfile.from_csv(args.profile),
            time_factor=args.time_factor,
            byte_factor=args.byte_factor,
            block_size=args.block_size,
            decode_step_seconds=args.decode_step_ms / 1000.0,
        )
        return backend, None, 1 << 20
    from prfaas.device import configure_threads, pick_device
    from prfaas.engine.backend_torch import TorchBackend
    from prfaas.model.checkpoint import load_checkpoint
    from prfaas.model.config import EOS_ID, get_preset
    from prfaas.model.hybrid import HybridModel

    configure_threads(args.threads)
    device = pick_device(args.device)
    if getattr(args, "model", ""):
        from prfaas.model.hf_checkpoint import load_hf_model

        model, info = load_hf_model(args.model, device=device, dtype=args.model_dtype or None)
        # Further EOS ids of the checkpoint reach the engine as stop ids from the router.
        eos = info.eos_token_ids[0] if info.eos_token_ids else None
        return TorchBackend(model, block_size=args.block_size), eos, model.config.max_context
    if args.checkpoint:
        model = load_checkpoint(args.checkpoint, device=device)
    else:
        model = HybridModel(get_preset(args.preset), device=device)
    model.eval()
    return TorchBackend(model, block_size=args.block_size), EOS_ID, model.config.max_context


def served_model_name(args: argparse.Namespace) -> str:
    """The name this worker reports (`WorkerLoad.model_name`): a checkpoint directory's name, as
    `HFModelInfo.name` gives it, else prfaas-<preset> (the router's default name)."""
    if getattr(args, "model", ""):
        return Path(args.model).resolve().name
    return f"prfaas-{getattr(args, 'preset', 'small')}"


def build_engine(
    args: argparse.Namespace,
    backend: ExecutionBackend,
    max_context: int,
    hooks: LayerHooks,
    listener: CacheListener,
) -> EngineCore:
    return EngineCore(
        backend,
        cache_budget_bytes=int(args.cache_budget_mb * (1 << 20)),
        max_num_batched_tokens=args.max_batched_tokens,
        max_num_seqs=args.max_num_seqs,
        max_model_len=max_context,
        cache_listener=listener,
        on_layer_done=hooks,
    )
