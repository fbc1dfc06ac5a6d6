"""Topology files (deploy/*.toml) parsed into frozen specs, and the processes they imply.

A topology names two datacenters: the PrfaaS cluster (prefill workers only) and the local PD cluster
(the router and PD workers with roles), plus the emulated link between them. `processes()` expands it
into one `ProcessSpec` per OS process, in start order; the launcher owns nothing else.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

from prfaas.data import topology_file
from prfaas.launcher import security_settings
from prfaas.launcher.security_settings import SecuritySpec
from prfaas.roles import PD_ROLES, Role

# The default two-datacenter topology ships with the package (deploy/local.toml links to it).
DEFAULT_TOPOLOGY = topology_file("local.toml")
BACKENDS = ("torch", "emulated")
POLICIES = ("prfaas", "homogeneous-pd", "naive-hetero")
LINK_MODES = ("relay", "netns", "none")


class TopologyError(ValueError):
    """The topology file is malformed; the message names the offending key."""


@dataclass(frozen=True)
class LinkSpec:
    mode: str = "relay"
    rate_gbps: float = 1.0
    delay_ms: float = 5.0
    jitter_ms: float = 0.0


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


@dataclass(frozen=True)
class Topology:
    name: str = "local-two-dc"
    backend: str = "torch"
    policy: str = "prfaas"
    model_preset: str = "small"
    # Hugging Face checkpoint directory (Qwen3.5 text) every torch worker and the router serve;
    # empty: the embedded `model_preset` (needs no download).
    model: str = ""
    torch_threads: int = 1
    host: str = "127.0.0.1"
    http_port: int = 8000
    router_grpc_port: int = 28050
    threshold_tokens: int = 512
    long_control_seconds: float = 30.0
    link: LinkSpec = field(default_factory=LinkSpec)
    prfaas_cluster: str = "prfaas"
    prfaas_workers: int = 1
    prfaas_grpc_base_port: int = 28100
    # KV receivers of PrfaaS workers (they import cached prefixes exported from the PD cluster).
    prfaas_kv_base_port: int = 28150
    pd_cluster: str = "pd"
    pd_roles: tuple[str, ...] = ("prefill", "decode")
    pd_grpc_base_port: int = 28200
    pd_kv_base_port: int = 28300
    link_base_port: int = 28400
    # Relay i's control port is this + i; 0: link_base_port + 50 (inside the usual port blocks).
    link_control_base_port: int = 0
    cache_budget_mb: int = 512
    block_size: int = 256
    kv_connections: int = 4
    # Full-attention KV on the line: none | fp8 | int8 (prfaas/worker/kv_compression.py).
    kv_compression: str = "none"
    emulated_profile_prfaas: str = ""
    emulated_profile_pd: str = ""
    emulated_time_factor: float = 0.1
    emulated_byte_factor: float = 0.01
    emulated_decode_step_ms: float = 25.0
    max_num_seqs: int = 64
    # Explicit hosts (one per worker, e.g. compose service names): worker i listens on its own host
    # at the base ports. Empty: every worker on `host`, at base port + i.
    prfaas_hosts: tuple[str, ...] = ()
    pd_hosts: tuple[str, ...] = ()
    link_host: str = ""
    # Address of the PrfaaS datacenter's workers when it differs from `host` (network namespaces).
    prfaas_bind_host: str = ""
    # [security]: what `prfaas up` turns on (security_settings.py); children get files, not this.
    security: SecuritySpec = field(default_factory=SecuritySpec)

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

    def __post_init__(self) -> None:
        checks = [
            (self.backend in BACKENDS, f"deployment.backend must be one of {BACKENDS}"),
            (self.policy in POLICIES, f"deployment.policy must be one of {POLICIES}"),
            (self.link.mode in LINK_MODES, f"link.mode must be one of {LINK_MODES}"),
            (all(r in PD_ROLES for r in self.pd_roles), f"pd.roles entries must be in {PD_ROLES}"),
            (len(self.pd_roles) >= 1, "pd.roles needs at least one PD worker"),
            (self.prfaas_workers >= 0, "prfaas.workers must be >= 0"),
            (self.block_size % 64 == 0, "worker.block_size must be a multiple of 64"),
            (self.link.rate_gbps > 0, "link.rate_gbps must be positive"),
            (
                self.kv_compression in ("none", "fp8", "int8"),
                "worker.kv_compression must be none, fp8 or int8",
            ),
            (
                self.kv_compression == "none" or self.backend == "torch",
                "worker.kv_compression needs deployment.backend = torch",
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
                raise TopologyError(message)

    def to_toml(self) -> str:
        """The topology as a file `load_topology` reads back to an equal Topology (child processes
        get the effective topology, overrides included, through this)."""

        def value(v: object) -> str:
            if isinstance(v, bool):
                return "true" if v else "false"
            if isinstance(v, str):
                return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
            if isinstance(v, (tuple, list)):
                return "[" + ", ".join(value(x) for x in v) + "]"
            return repr(v)

        sections = {
            "deployment": {
                "name": self.name,
                "backend": self.backend,
                "policy": self.policy,
                "model_preset": self.model_preset,
                "model": self.model,
                "torch_threads": self.torch_threads,
                "host": self.host,
            },
            "router": {
                "http_port": self.http_port,
                "grpc_port": self.router_grpc_port,
                "threshold_tokens": self.threshold_tokens,
                "long_control_seconds": self.long_control_seconds,
            },
            "link": {
                "mode": self.link.mode,
                "rate_gbps": self.link.rate_gbps,
                "delay_ms": self.link.delay_ms,
                "jitter_ms": self.link.jitter_ms,
                "host": self.link_host,
                "control_base_port": self.link_control_base_port,
            },
            "prfaas": {
                "cluster": self.prfaas_cluster,
                "workers": self.prfaas_workers,
                "grpc_base_port": self.prfaas_grpc_base_port,
                "kv_base_port": self.prfaas_kv_base_port,
                "hosts": self.prfaas_hosts,
                "bind_host": self.prfaas_bind_host,
            },
            "pd": {
                "cluster": self.pd_cluster,
                "roles": self.pd_roles,
                "grpc_base_port": self.pd_grpc_base_port,
                "kv_base_port": self.pd_kv_base_port,
                "link_base_port": self.link_base_port,
                "hosts": self.pd_hosts,
            },
            "worker": {
                "cache_budget_mb": self.cache_budget_mb,
                "block_size": self.block_size,
                "kv_connections": self.kv_connections,
                "kv_compression": self.kv_compression,
                "max_num_seqs": self.max_num_seqs,
            },
            "emulated": {
                "prfaas_profile": self.emulated_profile_prfaas,
                "pd_profile": self.emulated_profile_pd,
                "time_factor": self.emulated_time_factor,
                "byte_factor": self.emulated_byte_factor,
                "decode_step_ms": self.emulated_decode_step_ms,
            },
            "security": self.security.to_toml(),
        }
        lines = []
        for section, values in sections.items():
            lines.append(f"[{section}]")
            lines += [f"{k} = {value(v)}" for k, v in values.items()]
            lines.append("")
        return "\n".join(lines)

    def with_overrides(self, **changes: object) -> Topology:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


_SECTIONS = {
    "deployment": {"name", "backend", "policy", "model_preset", "model", "torch_threads", "host"},
    "router": {
        "http_port",
        "grpc_port",
        "metrics_port",
        "threshold_tokens",
        "long_control_seconds",
    },
    "link": {"mode", "rate_gbps", "delay_ms", "jitter_ms", "host", "control_base_port"},
    "prfaas": {"cluster", "workers", "grpc_base_port", "kv_base_port", "hosts", "bind_host"},
    "pd": {"cluster", "roles", "grpc_base_port", "kv_base_port", "link_base_port", "hosts"},
    "worker": {"cache_budget_mb", "block_size", "kv_connections", "kv_compression", "max_num_seqs"},
    "emulated": {"prfaas_profile", "pd_profile", "time_factor", "byte_factor", "decode_step_ms"},
    "security": set(security_settings.KEYS),
}


def _resolve(topology_path: Path, value: str) -> str:
    """Profile paths in a topology are relative to the topology file (the file a link points to:
    deploy/local.toml links to the shipped prfaas/data/topologies/local.toml)."""
    if not value:
        return ""
    return str((topology_path.resolve().parent / value).resolve())


def load_topology(path: str | Path | None = None) -> Topology:
    """Parse a topology TOML file (default: deploy/local.toml); unknown keys are errors."""
    path = Path(path) if path else DEFAULT_TOPOLOGY
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise TopologyError(f"cannot read topology {path}: {exc}") from exc
    for section, values in raw.items():
        if section not in _SECTIONS:
            raise TopologyError(f"{path}: unknown section [{section}]")
        unknown = set(values) - _SECTIONS[section]
        if unknown:
            raise TopologyError(f"{path}: unknown keys in [{section}]: {sorted(unknown)}")
    d, r, lk = raw.get("deployment", {}), raw.get("router", {}), raw.get("link", {})
    pf, pd, w, em = (
        raw.get("prfaas", {}),
        raw.get("pd", {}),
        raw.get("worker", {}),
        raw.get("emulated", {}),
    )
    base = Topology()
    try:
        security = SecuritySpec.from_toml(raw.get("security", {}), path)
    except ValueError as exc:
        raise TopologyError(f"{path}: {exc}") from exc
    return Topology(
        name=d.get("name", base.name),
        backend=d.get("backend", base.backend),
        policy=d.get("policy", base.policy),
        model_preset=d.get("model_preset", base.model_preset),
        # Relative to the topology file, like the profiles.
        model=_resolve(path, str(d.get("model", base.model))),
        torch_threads=int(d.get("torch_threads", base.torch_threads)),
        host=d.get("host", base.host),
        http_port=int(r.get("http_port", base.http_port)),
        router_grpc_port=int(r.get("grpc_port", base.router_grpc_port)),
        threshold_tokens=int(r.get("threshold_tokens", base.threshold_tokens)),
        long_control_seconds=float(r.get("long_control_seconds", base.long_control_seconds)),
        link=LinkSpec(
            mode=lk.get("mode", "relay"),
            rate_gbps=float(lk.get("rate_gbps", 1.0)),
            delay_ms=float(lk.get("delay_ms", 5.0)),
            jitter_ms=float(lk.get("jitter_ms", 0.0)),
        ),
        prfaas_cluster=pf.get("cluster", base.prfaas_cluster),
        prfaas_workers=int(pf.get("workers", base.prfaas_workers)),
        prfaas_grpc_base_port=int(pf.get("grpc_base_port", base.prfaas_grpc_base_port)),
        prfaas_kv_base_port=int(pf.get("kv_base_port", base.prfaas_kv_base_port)),
        pd_cluster=pd.get("cluster", base.pd_cluster),
        pd_roles=tuple(pd.get("roles", base.pd_roles)),
        pd_grpc_base_port=int(pd.get("grpc_base_port", base.pd_grpc_base_port)),
        pd_kv_base_port=int(pd.get("kv_base_port", base.pd_kv_base_port)),
        link_base_port=int(pd.get("link_base_port", base.link_base_port)),
        link_control_base_port=int(lk.get("control_base_port", base.link_control_base_port)),
        cache_budget_mb=int(w.get("cache_budget_mb", base.cache_budget_mb)),
        block_size=int(w.get("block_size", base.block_size)),
        kv_connections=int(w.get("kv_connections", base.kv_connections)),
        kv_compression=str(w.get("kv_compression", base.kv_compression)),
        emulated_profile_prfaas=_resolve(path, em.get("prfaas_profile", "")),
        emulated_profile_pd=_resolve(path, em.get("pd_profile", "")),
        emulated_time_factor=float(em.get("time_factor", base.emulated_time_factor)),
        emulated_byte_factor=float(em.get("byte_factor", base.emulated_byte_factor)),
        emulated_decode_step_ms=float(em.get("decode_step_ms", base.emulated_decode_step_ms)),
        max_num_seqs=int(w.get("max_num_seqs", base.max_num_seqs)),
        prfaas_hosts=tuple(pf.get("hosts", ())),
        prfaas_bind_host=pf.get("bind_host", ""),
        pd_hosts=tuple(pd.get("hosts", ())),
        link_host=lk.get("host", ""),
        security=security,
    )
