"""A running deployment: the processes a topology implies, started in order and stopped cleanly.

Start order: link relays, then workers (PrfaaS prefill workers, PD workers), then the router, each
waited for (gRPC health for workers, HTTP /ready for the router) before the next group. All share a
freshly generated KV-transfer secret. `stop()` (also on any failure during start) terminates every
child; children die with the launcher even if it is killed (see supervisor.py).
"""

from __future__ import annotations

import secrets
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from prfaas.launcher.supervisor import ProcessSpec, Supervisor
from prfaas.launcher.topology import Topology, WorkerAddress

START_TIMEOUT_S = 180.0


def _http_ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as reply:
            return reply.status == 200
    except OSError:
        return False


def _grpc_ready(address: str) -> bool:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    channel = grpc.insecure_channel(address)
    try:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=1.0
        )
        return reply.status == health_pb2.HealthCheckResponse.SERVING
    except grpc.RpcError:
        return False
    finally:
        channel.close()


def _port(address: str) -> str:
    return address.rsplit(":", 1)[1]


@dataclass(frozen=True)
class Endpoints:
    http: str
    metrics: list[str]
    router_grpc: str


class Deployment:
    def __init__(
        self, topo: Topology, topology_path: Path, log_dir: Path, *, metrics_base_port: int = 0
    ) -> None:
        self.topo = topo
        # Where the topology came from (messages only); children read the effective copy below.
        self.source_path = topology_path
        log_dir.mkdir(parents=True, exist_ok=True)
        self.supervisor = Supervisor(log_dir)
        # The router reads the *effective* topology (command-line overrides included).
        self.topology_path = log_dir / "topology.toml"
        self.topology_path.write_text(topo.to_toml())
        self.secret = secrets.token_hex(16)
        self.metrics_base_port = metrics_base_port

    def _cli(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "prfaas.cli", *args]

    def _worker_args(self, w: WorkerAddress, index: int) -> list[str]:
        t = self.topo
        host = w.grpc.rsplit(":", 1)[0]
        args = ["--worker-id", w.worker_id, "--cluster", w.cluster, "--host", host]
        args += [
            "--grpc-port",
            _port(w.grpc),
            "--backend",
            t.backend,
            "--threads",
            str(t.torch_threads),
        ]
        args += ["--cache-budget-mb", str(t.cache_budget_mb), "--block-size", str(t.block_size)]
        args += ["--kv-connections", str(t.kv_connections), "--link-gbps", str(t.link.rate_gbps)]
        if self.metrics_base_port:
            args += ["--metrics-port", str(self.metrics_base_port + index)]
        if t.backend == "torch":
            args += ["--preset", t.model_preset]
        else:
            profile = t.emulated_profile_prfaas if w.kind == "prefill" else t.emulated_profile_pd
            args += ["--profile", profile, "--time-factor", str(t.emulated_time_factor)]
            args += ["--byte-factor", str(t.emulated_byte_factor)]
        if w.kind == "pd":
            args += ["--role", w.role, "--kv-port", _port(w.kv_direct)]
        return args

    def specs(self) -> list[list[ProcessSpec]]:
        """Process groups in start order; every group is ready before the next starts."""
        t = self.topo
        env = {"PRFAAS_KV_SECRET": self.secret, "OMP_WAIT_POLICY": "PASSIVE"}
        workers = t.workers()
        relays = []
        if t.link.mode == "relay":
            for w in workers:
                if w.kind == "pd" and w.kv_via_link != w.kv_direct:
                    relays.append(
                        ProcessSpec(
                            f"link-{w.worker_id}",
                            self._cli(
                                "link",
                                "--listen",
                                w.kv_via_link,
                                "--target",
                                w.kv_direct,
                                "--delay-ms",
                                str(t.link.delay_ms),
                                "--jitter-ms",
                                str(t.link.jitter_ms),
                                "--rate-mbit",
                                str(t.link.rate_gbps * 1000),
                            ),
                            env,
                        )
                    )
        worker_specs = []
        for index, w in enumerate(workers):
            kind = "prefill-worker" if w.kind == "prefill" else "pd-worker"
            worker_specs.append(
                ProcessSpec(
                    w.worker_id,
                    self._cli(kind, *self._worker_args(w, index + 1)),
                    env,
                    ready=lambda address=w.grpc: _grpc_ready(address),
                )
            )
        router = ProcessSpec(
            "router",
            self._cli(
                "router",
                "--topology",
                str(self.topology_path),
                "--policy",
                t.policy,
                "--host",
                t.host,
                "--http-port",
                str(t.http_port),
                "--grpc-port",
                str(t.router_grpc_port),
                "--threshold",
                str(t.threshold_tokens),
            ),
            env,
            ready=lambda: _http_ready(f"http://{t.host}:{t.http_port}/ready"),
        )
        return [relays, worker_specs, [router]]

    def start(self, timeout_s: float = START_TIMEOUT_S) -> Endpoints:
        try:
            for group in self.specs():
                children = [self.supervisor.start(spec) for spec in group]
                for child in children:
                    self.supervisor.wait_ready(child, timeout_s)
        except BaseException:
            self.stop()
            raise
        return self.endpoints()

    def endpoints(self) -> Endpoints:
        t = self.topo
        metrics = [f"http://{t.host}:{t.http_port}/metrics"]
        if self.metrics_base_port:
            metrics += [
                f"http://{t.host}:{self.metrics_base_port + i + 1}/metrics"
                for i in range(len(t.workers()))
            ]
        return Endpoints(
            f"http://{t.host}:{t.http_port}/v1", metrics, f"{t.host}:{t.router_grpc_port}"
        )

    def stop(self) -> None:
        self.supervisor.stop_all()
