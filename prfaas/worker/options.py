"""A worker process's options: one pydantic model, from which the command line is generated.

Each option is declared once, as a field of `WorkerOptions` (type, default, help); the two worker
kinds differ in defaults and in `role` (`PrefillWorkerOptions`, `PDWorkerOptions`).
`add_worker_arguments` turns the fields into `--flags`; `options_from_args` validates what
argparse parsed into the model (unknown keys rejected, checks across options) and raises a
`ConfigError` that names the flag. Logging and credential flags belong to their own modules
(`log_setup.py`, `security/options.py`, shared with the router); `WorkerSecurity` is what the
runtime gets of them: the resolved secret, TLS contexts and gRPC credentials, not flags.
Building the backend and engine from the options is here too.
"""

from __future__ import annotations

import argparse
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Self, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError, model_validator

from prfaas.checkpoint_rule import DEFAULT_CHECKPOINT_EVERY_BLOCKS
from prfaas.config_error import ConfigError
from prfaas.engine.core import EngineCore
from prfaas.engine.execution_backend import ExecutionBackend
from prfaas.engine.prefix_cache import CacheListener
from prfaas.log_setup import add_logging_arguments
from prfaas.roles import PD_ROLES
from prfaas.security import identities
from prfaas.security.credentials import GrpcCredentials
from prfaas.security.kv_tls import receiver_context, sender_context
from prfaas.security.options import add_security_arguments, credentials_from_args
from prfaas.security.secret_files import read_secret
from prfaas.worker.compute import LayerHooks

SECRET_ENV = "PRFAAS_KV_SECRET"

BACKENDS = ("torch", "emulated")
KV_COMPRESSIONS = ("none", "fp8", "int8")
EMULATED_KV_DTYPES = ("uint8", "bfloat16", "float16", "float32")
"""The emulated backend's declarable KV dtypes (engine/backend_emulated.py KV_DTYPES)."""
Int = Annotated[int, Strict()]
Float = Annotated[float, Strict()]
Str = Annotated[str, Strict()]


def kv_is_float(backend: str, kv_dtype: str) -> bool:
    """Whether a worker's full-attention KV is float data the line codec can encode: the torch
    backend's always, the emulated backend's with a float `kv_dtype`."""
    return backend == "torch" or kv_dtype != "uint8"


@dataclass(frozen=True)
class OneOf:
    """Field metadata: the values a string option may take (argparse `choices`, and checked)."""

    choices: tuple[str, ...]


class WorkerOptions(BaseModel):
    """Options of either worker kind (field = `--field-name`; `description` = its help)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    worker_id: Str = Field(description="unique id, e.g. prfaas-0 or pd-1")
    cluster: Str = Field("", description="datacenter / cluster name")
    host: Str = Field("127.0.0.1", description="address to bind")
    grpc_port: Int = Field(0, description="gRPC port")
    metrics_port: Int = Field(0, description="Prometheus port (0: off)")
    backend: Annotated[Str, OneOf(BACKENDS)] = Field(
        "torch", description="torch (the model) or emulated (a profile)"
    )
    preset: Str = Field("small", description="model preset (torch backend)")
    checkpoint: Str = Field("", description="safetensors checkpoint (torch backend)")
    model: Str = Field(
        "",
        description="Hugging Face checkpoint directory (Qwen3.5 text; torch backend; overrides "
        "--preset)",
    )
    model_dtype: Str = Field("", description="float32 | bfloat16 (default: the checkpoint's dtype)")
    device: Str = Field("auto", description="cuda | cpu | auto")
    threads: Int | None = Field(None, description="torch threads (default 1)")
    cache_budget_mb: Float = Field(512.0, description="KV and state cache budget (MiB)")
    block_size: Int = Field(256, description="tokens per KV block")
    checkpoint_every_blocks: Int = Field(
        DEFAULT_CHECKPOINT_EVERY_BLOCKS,
        description="linear-state checkpoint interval in blocks, besides each prompt's end and "
        "the cached-KV junction (1: every block, 0: none; prfaas/checkpoint_rule.py)",
    )
    max_batched_tokens: Int = Field(2048, description="tokens per engine step at most")
    max_num_seqs: Int = Field(64, description="most requests running at once (BS_max)")
    profile: Str = Field("", description="emulated backend: profile CSV")
    time_factor: Float = Field(0.1, description="emulated: time scale")
    byte_factor: Float = Field(1e-3, description="emulated: byte scale")
    decode_step_ms: Float = Field(25.0, description="emulated: decode step")
    kv_dtype: Annotated[Str, OneOf(EMULATED_KV_DTYPES)] = Field(
        "uint8",
        description="emulated: the KV layout's dtype (uint8: opaque bytes; a float dtype: float "
        "rows of whole 64-element groups, which --kv-compression can encode)",
    )
    kv_connections: Int = Field(4, description="TCP connections per peer")
    kv_chunk_mib: Float = Field(4.0, description="KV transfer chunk size")
    kv_compression: Annotated[Str, OneOf(KV_COMPRESSIONS)] = Field(
        "none",
        description="full-attention KV on the line: fp8 e4m3 or int8 with per-64-element scales "
        "(torch backend; every worker of a deployment must agree, see docs/kv-wire-format.md)",
    )
    kv_port: Int = Field(0, description="KV receiver TCP port")
    kv_advertise: Str = Field("", description="KV address others should use (default host:kv-port)")
    kv_link_advertise: Str = Field(
        "",
        description="KV address senders in the other cluster use (default: the KV advertise "
        "address)",
    )
    router: Str = Field(
        "",
        description="router gRPC address(es) to register with, comma-separated; a name resolving "
        "to several addresses (a headless Service) registers with every router replica",
    )
    grpc_advertise: Str = Field(
        "", description="gRPC address routers should use (default host:port)"
    )
    register_interval_s: Float = Field(
        2.0,
        description="re-register this often (keepalive; a restarted router relearns the worker)",
    )
    drain_timeout_s: Float = Field(
        30.0, description="on SIGTERM, wait this long for in-flight requests before aborting them"
    )
    link_gbps: Float = Field(0.0, description="nominal KV link rate, for utilization (0: unknown)")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        for name, info in type(self).model_fields.items():
            for one_of in (m for m in info.metadata if isinstance(m, OneOf)):
                if getattr(self, name) not in one_of.choices:
                    raise ValueError(
                        f"{_flag(name)}: must be one of {', '.join(one_of.choices)}, "
                        f"got {getattr(self, name)!r}"
                    )
        if self.backend == "emulated" and not self.profile:
            raise ValueError("--backend emulated needs --profile CSV")
        if self.kv_compression != "none" and not kv_is_float(self.backend, self.kv_dtype):
            raise ValueError(
                "--kv-compression needs float KV: the torch backend, or the emulated one with "
                "--kv-dtype bfloat16, float16 or float32 (uint8 KV is not data)"
            )
        return self

    @property
    def kv_address(self) -> str:
        """The KV receiver's address as others reach it."""
        return self.kv_advertise or f"{self.host}:{self.kv_port}"

    @property
    def grpc_address(self) -> str:
        """The gRPC address routers use."""
        return self.grpc_advertise or f"{self.host}:{self.grpc_port}"


class PrefillWorkerOptions(WorkerOptions):
    grpc_port: Int = Field(50100, description="gRPC port")
    kv_port: Int = Field(
        0, description="KV receiver TCP port, for importing prefixes from other workers (0: none)"
    )


class PDWorkerOptions(WorkerOptions):
    grpc_port: Int = Field(50200, description="gRPC port")
    kv_port: Int = Field(50300, description="KV receiver TCP port")
    role: Annotated[Str, OneOf(PD_ROLES)] = Field("mixed", description="the starting role")
    decode_admission_slack: Int = Field(
        0,
        description="refuse a decode-only request (retryable 'overloaded': the router tries "
        "another decode worker or answers 429) when the running batch, the requests whose KV "
        "waits for a seat and the transfers past half their bytes already number max_num_seqs "
        "+ this (negative: never refuse; prfaas/worker/seat_line.py)",
    )


def add_worker_arguments(parser: argparse.ArgumentParser, options: type[WorkerOptions]) -> None:
    """One `--flag` per field of `options`, then the logging and credential flags."""
    add_logging_arguments(parser)
    for name, info in options.model_fields.items():
        kind: dict[str, Any] = {"help": info.description}
        one_of = [m for m in info.metadata if isinstance(m, OneOf)]
        if one_of:
            kind["choices"] = one_of[0].choices
        elif (scalar := _scalar(info.annotation)) is not str:
            kind["type"] = scalar
        if info.is_required():
            kind["required"] = True
        else:
            kind["default"] = info.default
        parser.add_argument(_flag(name), **kind)
    add_security_arguments(parser, router=False)


def _flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def _scalar(annotation: Any) -> Any:
    """The scalar type of a field: `Annotated[int, Strict()] | None` -> int."""
    if get_origin(annotation) is Annotated:
        return _scalar(get_args(annotation)[0])
    if get_origin(annotation) in (Union, UnionType):
        (inner,) = [a for a in get_args(annotation) if a is not type(None)]
        return _scalar(inner)
    return annotation


O = TypeVar("O", bound=WorkerOptions)


def options_from_args(options: type[O], args: argparse.Namespace) -> O:
    """The validated options of what argparse parsed (the model's own fields only); a
    `ConfigError` naming the flag when they do not fit together."""
    values = {name: getattr(args, name) for name in options.model_fields if hasattr(args, name)}
    try:
        return options.model_validate(values)
    except ValidationError as exc:
        error = exc.errors()[0]
        cause = error.get("ctx", {}).get("error")
        what = str(cause) if cause is not None else error["msg"]
        loc = error["loc"]
        raise ConfigError(f"{_flag(str(loc[0]))}: {what}" if loc else what) from None


@dataclass(frozen=True)
class WorkerSecurity:
    """What the worker's credential flags resolve to (files read, contexts built, once)."""

    kv_secret: bytes
    kv_sender_ssl: ssl.SSLContext | None
    kv_receiver_ssl: ssl.SSLContext | None
    grpc: GrpcCredentials | None
    insecure: bool
    """Serve gRPC on a non-loopback address with no credentials (`--insecure`)."""


def worker_security(args: argparse.Namespace, worker_id: str) -> WorkerSecurity:
    return WorkerSecurity(
        kv_secret=kv_secret(args),
        kv_sender_ssl=sender_context(args),
        kv_receiver_ssl=receiver_context(args),
        grpc=credentials_from_args(args, lambda: identities.worker(worker_id)),
        insecure=bool(args.insecure),
    )


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


def build_backend(options: WorkerOptions) -> tuple[ExecutionBackend, int | None, int]:
    """Returns (backend, eos_token_id, max_context)."""
    if options.backend == "emulated":
        from prfaas.engine.backend_emulated import EmulatedBackend
        from prfaas.planner.profiles import PrefillProfile

        backend = EmulatedBackend(
            PrefillProfile.from_csv(options.profile),
            time_factor=options.time_factor,
            byte_factor=options.byte_factor,
            block_size=options.block_size,
            decode_step_seconds=options.decode_step_ms / 1000.0,
            kv_dtype=options.kv_dtype,
        )
        return backend, None, 1 << 20
    from prfaas.device import configure_threads, pick_device
    from prfaas.engine.backend_torch import TorchBackend
    from prfaas.model.checkpoint import load_checkpoint
    from prfaas.model.config import EOS_ID, get_preset
    from prfaas.model.hybrid import HybridModel

    configure_threads(options.threads)
    device = pick_device(options.device)
    if options.model:
        from prfaas.model.hf_checkpoint import load_hf_model

        model, info = load_hf_model(options.model, device=device, dtype=options.model_dtype or None)
        # Further EOS ids of the checkpoint reach the engine as stop ids from the router.
        eos = info.eos_token_ids[0] if info.eos_token_ids else None
        return TorchBackend(model, block_size=options.block_size), eos, model.config.max_context
    if options.checkpoint:
        model = load_checkpoint(options.checkpoint, device=device)
    else:
        model = HybridModel(get_preset(options.preset), device=device)
    model.eval()
    return TorchBackend(model, block_size=options.block_size), EOS_ID, model.config.max_context


def served_model_name(options: WorkerOptions) -> str:
    """The name this worker reports (`WorkerLoad.model_name`): a checkpoint directory's name, as
    `HFModelInfo.name` gives it, else prfaas-<preset> (the router's default name)."""
    if options.model:
        return Path(options.model).resolve().name
    return f"prfaas-{options.preset}"


def build_engine(
    options: WorkerOptions,
    backend: ExecutionBackend,
    max_context: int,
    hooks: LayerHooks,
    listener: CacheListener,
) -> EngineCore:
    return EngineCore(
        backend,
        cache_budget_bytes=int(options.cache_budget_mb * (1 << 20)),
        max_num_batched_tokens=options.max_batched_tokens,
        max_num_seqs=options.max_num_seqs,
        max_model_len=max_context,
        checkpoint_every_blocks=options.checkpoint_every_blocks,
        cache_listener=listener,
        on_layer_done=hooks,
    )
