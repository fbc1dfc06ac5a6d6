"""The topology: two datacenters, the link between them, and the workers they run.

A topology names the PrfaaS cluster (prefill workers only), the local PD cluster (the router and
PD workers with roles) and the emulated link between them. `Topology.workers()` lists every
worker with the addresses it is reached at; the launcher starts them, the router registers them.
Each setting is declared once, below, with its type, default and place in the file (`At`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from pydantic import Field, model_validator

from prfaas.checkpoint_rule import DEFAULT_CHECKPOINT_EVERY_BLOCKS
from prfaas.roles import PD_ROLES, Role
from prfaas.topology.layout import At, Float, Int, Settings, Str, TopologyError, dump, one_of
from prfaas.topology.security import SecuritySpec

__all__ = ["BACKENDS", "LINK_MODES", "POLICIES", "LinkSpec", "Topology", "TopologyError"]

BACKENDS = ("torch", "emulated")
POLICIES = ("prfaas", "homogeneous-pd", "naive-hetero")
LINK_MODES = ("relay", "netns", "none")
KV_COMPRESSIONS = ("none", "fp8", "int8")
EMULATED_KV_DTYPES = ("uint8", "bfloat16", "float16", "float32")


class LinkSpec(Settings):
    """The emulated cross-datacenter link (the rest of `[link]` is in `Topology`)."""

    mode: Annotated[Str, At("link", "mode"), one_of(LINK_MODES)] = "relay"
    rate_gbps: Annotated[Float, At("link", "rate_gbps")] = 1.0
    delay_ms: Annotated[Float, At("link", "delay_ms")] = 5.0
    jitter_ms: Annotated[Float, At("link", "jitter_ms")] = 0.0


@dataclass(frozen=True)
class WorkerAddress:
    """Where one worker is reached. `kv_via_link` is its KV receiver as seen from the PrfaaS
    datacenter (through the emulated link); `kv_direct` as seen from inside the PD datacenter."""

    worker_id: str
    kind: str  # "prefill" (PrfaaS cluster) | "pd"
    cluster: str
    role: str  # "prfaas" for PrfaaS workers; mixed | prefill | decode for PD workers
    grpc: str
    kv_direct: str = ""
    kv_via_link: str = ""
    # The relay's control port (cut/stall/down, prfaas/link/relay.py) when a relay fronts `kv_via_link`.
    link_control: str = ""


class Topology(Settings):
    # [deployment]
    name: Annotated[Str, At("deployment", "name")] = "local-two-dc"
    backend: Annotated[Str, At("deployment", "backend"), one_of(BACKENDS)] = "torch"
    policy: Annotated[Str, At("deployment", "policy"), one_of(POLICIES)] = "prfaas"
    model_preset: Annotated[Str, At("deployment", "model_preset")] = "small"
    # Hugging Face checkpoint directory (Qwen3.5 text) every torch worker and the router serve;
    # empty: the embedded `model_preset` (needs no download).
    model: Annotated[Str, At("deployment", "model", relative_path=True)] = ""
    torch_threads: Annotated[Int, At("deployment", "torch_threads")] = 1
    host: Annotated[Str, At("deployment", "host")] = "127.0.0.1"
    # [router]
    http_port: Annotated[Int, At("router", "http_port")] = 8000
    router_grpc_port: Annotated[Int, At("router", "grpc_port")] = 28050
    # Read and kept, used by nothing: the router serves /metrics on its HTTP port.
    router_metrics_port: Annotated[Int, At("router", "metrics_port")] = 0
    threshold_tokens: Annotated[Int, At("router", "threshold_tokens")] = 512
    long_control_seconds: Annotated[Float, At("router", "long_control_seconds")] = 30.0
    # [link]
    link: LinkSpec = Field(default_factory=LinkSpec)
    link_host: Annotated[Str, At("link", "host")] = ""
    # Relay i's control port is this + i; 0: link_base_port + 50 (inside the usual port blocks).
    link_control_base_port: Annotated[Int, At("link", "control_base_port")] = 0
    # [prfaas]
    prfaas_cluster: Annotated[Str, At("prfaas", "cluster")] = "prfaas"
    prfaas_workers: Annotated[Int, At("prfaas", "workers")] = 1
    prfaas_grpc_base_port: Annotated[Int, At("prfaas", "grpc_base_port")] = 28100
    # KV receivers of PrfaaS workers (they import cached prefixes exported from the PD cluster).
    prfaas_kv_base_port: Annotated[Int, At("prfaas", "kv_base_port")] = 28150
    # Explicit hosts (one per worker, e.g. compose service names): worker i listens on its own host
    # at the base ports. Empty: every worker on `host`, at base port + i.
    prfaas_hosts: Annotated[tuple[Str, ...], At("prfaas", "hosts")] = ()
    # Address of the PrfaaS datacenter's workers when it differs from `host` (network namespaces).
    prfaas_bind_host: Annotated[Str, At("prfaas", "bind_host")] = ""
    # [pd]
    pd_cluster: Annotated[Str, At("pd", "cluster")] = "pd"
    pd_roles: Annotated[tuple[Annotated[Str, one_of(PD_ROLES)], ...], At("pd", "roles")] = (
        "prefill",
        "decode",
    )
    pd_grpc_base_port: Annotated[Int, At("pd", "grpc_base_port")] = 28200
    pd_kv_base_port: Annotated[Int, At("pd", "kv_base_port")] = 28300
    link_base_port: Annotated[Int, At("pd", "link_base_port")] = 28400
    pd_hosts: Annotated[tuple[Str, ...], At("pd", "hosts")] = ()
    # [worker]
    cache_budget_mb: Annotated[Int, At("worker", "cache_budget_mb")] = 512
    block_size: Annotated[Int, At("worker", "block_size")] = 256
    kv_connections: Annotated[Int, At("worker", "kv_connections")] = 4
    # Full-attention KV on the line (prfaas/worker/kv_compression.py).
    kv_compression: Annotated[Str, At("worker", "kv_compression"), one_of(KV_COMPRESSIONS)] = "none"
    max_num_seqs: Annotated[Int, At("worker", "max_num_seqs")] = 64
    # Linear-state checkpoint interval in blocks, besides each prompt's end (prfaas/checkpoint_rule.py).
    checkpoint_every_blocks: Annotated[Int, At("worker", "checkpoint_every_blocks")] = (
        DEFAULT_CHECKPOINT_EVERY_BLOCKS
    )
    # [emulated]
    emulated_profile_prfaas: Annotated[
        Str, At("emulated", "prfaas_profile", relative_path=True)
    ] = ""
    emulated_profile_pd: Annotated[Str, At("emulated", "pd_profile", relative_path=True)] = ""
    emulated_time_factor: Annotated[Float, At("emulated", "time_factor")] = 0.1
    emulated_byte_factor: Annotated[Float, At("emulated", "byte_factor")] = 0.01
    emulated_decode_step_ms: Annotated[Float, At("emulated", "decode_step_ms")] = 25.0
    # The KV layout's dtype: uint8 (opaque bytes), or float rows worker.kv_compression can encode.
    emulated_kv_dtype: Annotated[Str, At("emulated", "kv_dtype"), one_of(EMULATED_KV_DTYPES)] = (
        "uint8"
    )
    # [security]: what `prfaas up` turns on (security.py); children get files, not this.
    security: SecuritySpec = Field(default_factory=SecuritySpec)

    @model_validator(mode="after")
    def _consistent(self) -> Topology:
        """Checks across settings; each message names the keys involved."""
        checks = [
            (len(self.pd_roles) >= 1, "pd.roles needs at least one PD worker"),
            (self.prfaas_workers >= 0, "prfaas.workers must be >= 0"),
            (self.block_size % 64 == 0, "worker.block_size must be a multiple of 64"),
            (self.checkpoint_every_blocks >= 0, "worker.checkpoint_every_blocks must be >= 0"),
            (self.link.rate_gbps > 0, "link.rate_gbps must be positive"),
            (
                self.kv_compression == "none"
                or self.backend == "torch"
                or self.emulated_kv_dtype != "uint8",
                "worker.kv_compression needs float KV: deployment.backend = torch, or "
                "emulated.kv_dtype = bfloat16, float16 or float32",
            ),
            (
                not self.prfaas_hosts or len(self.prfaas_hosts) == self.prfaas_workers,
                "prfaas.hosts needs one entry per PrfaaS worker",
            ),
            (
                not self.pd_hosts or len(self.pd_hosts) == len(self.pd_roles),
                "pd.hosts needs one entry per PD worker",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        return self

    def workers(self) -> list[WorkerAddress]:
        """Every worker of the deployment, PrfaaS workers first."""
        out = []
        for j in range(self.prfaas_workers):
            own = self.prfaas_bind_host or self.host
            host, off = (self.prfaas_hosts[j], 0) if self.prfaas_hosts else (own, j)
            kv = f"{host}:{self.prfaas_kv_base_port + off}"
            out.append(
                WorkerAddress(
                    f"prfaas-{j}",
                    "prefill",
                    self.prfaas_cluster,
                    Role.PRFAAS.value,
                    f"{host}:{self.prfaas_grpc_base_port + off}",
                    kv_direct=kv,
                    kv_via_link=kv,
                )
            )
        for i, role in enumerate(self.pd_roles):
            host, off = (self.pd_hosts[i], 0) if self.pd_hosts else (self.host, i)
            kv = f"{host}:{self.pd_kv_base_port + off}"
            via = control = kv
            if self.link.mode == "relay":
                relay_host = self.link_host or self.host
                via = f"{relay_host}:{self.link_base_port + i}"
                control_base = self.link_control_base_port or self.link_base_port + 50
                control = f"{relay_host}:{control_base + i}"
            out.append(
                WorkerAddress(
                    f"pd-{i}",
                    "pd",
                    self.pd_cluster,
                    role,
                    f"{host}:{self.pd_grpc_base_port + off}",
                    kv_direct=kv,
                    kv_via_link=via,
                    link_control=control if via != kv else "",
                )
            )
        return out

    def to_toml(self) -> str:
        """The topology as a file `load_topology` reads back to an equal Topology (child processes
        get the effective topology, overrides included, through this)."""
        return dump(self)

    def with_overrides(self, **changes: object) -> Topology:
        """A copy with the changes that are not None (command-line options left unset)."""
        return self.replace(**{k: v for k, v in changes.items() if v is not None})
