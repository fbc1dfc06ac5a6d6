"""A running deployment: the processes a topology implies, started in order and stopped cleanly.

Start order: (network namespaces,) link relays, workers (PrfaaS prefill workers, PD workers), the
router; each group is waited for before the next (gRPC health or an open port for workers, HTTP
/ready for the router). All processes share a freshly generated KV-transfer secret. `stop()` (also
run on any failure during start) terminates every child, then removes the namespaces; children die
with the launcher even if it is killed (supervisor.py). `start(supervise=True)` (what `prfaas up`
does) then restarts any child that dies, on the same argv and ports; the router rebuilds its
registry from the topology and polls restarted workers back to healthy. Each relay serves its
control port (`link_control` in the topology; `endpoints().relay_controls`) for cut/stall/down.

With `netns=True` the PrfaaS cluster runs in one namespace and the PD cluster plus the router in
another, joined by one shaped veth (netns.py); the router's HTTP/gRPC ports and the workers'
metrics ports are forwarded to the host's loopback, so endpoints look the same in both modes.
"""

from __future__ import annotations

import logging
import os
import secrets
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from prfaas.launcher.netns import ADDR_PD, ADDR_PRFAAS, NetnsForwarder, NetnsLink, socket_in_netns
from prfaas.launcher.port_check import Listener, busy_ports, ephemeral_listeners
from prfaas.launcher.probes import ephemeral_port_range, grpc_ready, http_ready
from prfaas.launcher.relay_control import relay_answers
from prfaas.launcher.restart_policy import RestartPolicy
from prfaas.launcher.supervisor import ProcessSpec, Supervisor
from prfaas.security.deployment_secrets import DeploymentSecrets
from prfaas.topology import Topology, WorkerAddress

log = logging.getLogger(__name__)

START_TIMEOUT_S = 180.0


def _port_open_in_ns(ns: str, address: str) -> bool:
    host, port = address.rsplit(":", 1)
    sock = socket_in_netns(ns)
    sock.settimeout(1.0)
    try:
        sock.connect((host, int(port)))
        return True
    except OSError:
        return False
    finally:
        sock.close()


def _port(address: str) -> str:
    return address.rsplit(":", 1)[1]


def _split(address: str) -> tuple[str, int]:
    host, port = address.rsplit(":", 1)
    return host, int(port)


class PortsInUse(RuntimeError):
    """A port the deployment needs is taken; raised by `start()` before any child starts."""


@dataclass(frozen=True)
class Endpoints:
    http: str
    metrics: list[str]
    router_grpc: str
    # Relay process name -> its control port (`cut`, `stall on|off`, `down`/`up`; relay_control.py).
    relay_controls: dict[str, str] = field(default_factory=dict)
    # The process name of each `metrics` URL (same order).
    metrics_processes: list[str] = field(default_factory=list)


class Deployment:
    def __init__(
        self,
        topo: Topology,
        topology_path: Path,
        log_dir: Path,
        *,
        metrics_base_port: int = 0,
        netns: bool = False,
        tls: bool = False,
        api_key_file: Path | None = None,
        generate_api_key: bool = False,
        child_args: tuple[str, ...] = (),
        worker_args: tuple[str, ...] = (),
    ) -> None:
        # Where the topology came from (messages only); children read the effective copy.
        self.source_path = topology_path
        log_dir.mkdir(parents=True, exist_ok=True)
        self.supervisor = Supervisor(log_dir)
        self.secret = secrets.token_hex(16)
        # Secure by default: a per-deployment gRPC token (or, with `tls`, a dev CA and one
        # certificate per process; the router's also serves HTTPS) and the KV secret, in a private
        # directory; children get paths. `generate_api_key`: a fresh API key there too. The
        # topology's [security] settings count as if given here (an argument only adds to them).
        sec = topo.security
        key_file = api_key_file or (Path(sec.api_key_file) if sec.api_key_file else None)
        self.secrets = DeploymentSecrets.create(
            [w.worker_id for w in topo.workers()], tls=tls or sec.tls, api_key_file=key_file,
            kv_secret=self.secret, generate_api_key=generate_api_key or sec.generate_api_key,
            router_hosts=(topo.host,), kv_tls=sec.kv_tls,
        )  # fmt: skip
        self.metrics_base_port = metrics_base_port
        self.public = topo
        self.netns: NetnsLink | None = None
        self.forwarder: NetnsForwarder | None = None
        if netns:
            self.netns = NetnsLink(
                f"pf{os.getpid() % 100000}", topo.link.rate_gbps, topo.link.delay_ms
            )
        self.topo = topo
        self.topology_path = log_dir / "topology.toml"
        # Relay mode: the relays in front of the PD workers are one link with one rate cap; they
        # share its token-bucket timeline through this file (prfaas/link/token_bucket.py).
        self.link_timeline = log_dir / "link.timeline"
        # Options every child takes (prfaas up's --log-level/--log-format), after its own.
        self.child_args = child_args
        # Options only the workers take, after their own (prfaas up --checkpoint).
        self.worker_args = worker_args

    def _effective(self) -> Topology:
        """The topology the children see: in netns mode, each cluster on its namespace address;
        the relay only when netem could not add the delay (tbf already caps the rate)."""
        if self.netns is None:
            return self.public
        mode = "relay" if self.public.link.delay_ms > 0 and not self.netns.netem_delay else "none"
        return self.public.replace(
            host=ADDR_PD,
            prfaas_bind_host=ADDR_PRFAAS,
            link=self.public.link.replace(mode=mode),
        )

    def _cli(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "prfaas.cli", *args, *self.child_args]

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
        args += ["--max-num-seqs", str(t.max_num_seqs)]
        args += ["--checkpoint-every-blocks", str(t.checkpoint_every_blocks)]
        if t.kv_compression != "none":
            args += ["--kv-compression", t.kv_compression]
        if self.metrics_base_port:
            args += ["--metrics-port", str(self.metrics_base_port + index)]
        if t.backend == "torch" and t.model:
            args += ["--model", t.model]
        elif t.backend == "torch":
            args += ["--preset", t.model_preset]
        else:
            profile = t.emulated_profile_prfaas if w.kind == "prefill" else t.emulated_profile_pd
            args += ["--profile", profile, "--time-factor", str(t.emulated_time_factor)]
            args += ["--byte-factor", str(t.emulated_byte_factor)]
            args += ["--decode-step-ms", str(t.emulated_decode_step_ms)]
            if t.emulated_kv_dtype != "uint8":
                args += ["--kv-dtype", t.emulated_kv_dtype]
        if w.kind == "pd":
            args += ["--role", w.role]
        args += ["--kv-port", _port(w.kv_direct)]
        return args

    def _relay_metrics_port(self, index: int) -> int:
        """Relays' /metrics ports follow the workers' (metrics_base_port + 1 .. + num_workers)."""
        return self.metrics_base_port + len(self.topo.workers()) + 1 + index

    def _relayed(self) -> list[WorkerAddress]:
        """The PD workers a relay fronts, in the order `specs()` starts their relays (every PD
        worker: roles change at run time, and prefix exports reach PD-P too)."""
        if self.topo.link.mode != "relay":
            return []
        return [w for w in self.topo.workers() if w.kind == "pd" and w.kv_via_link != w.kv_direct]

    def _relay_hosts(self) -> list[str]:
        """Listen hosts of the relays `specs()` starts, in order."""
        return [w.kv_via_link.rsplit(":", 1)[0] for w in self._relayed()]

    def _placement(self, kind: str) -> tuple[tuple[str, ...], str | None]:
        """(command prefix, namespace) of a process of this kind ("prefill" = PrfaaS cluster)."""
        if self.netns is None:
            return (), None
        ns = self.netns.ns_prfaas if kind == "prefill" else self.netns.ns_pd
        return self.netns.prefix_for(ns), ns

    def specs(self) -> list[list[ProcessSpec]]:
        """Process groups in start order; every group is ready before the next starts."""
        t = self.topo
        env = {"OMP_WAIT_POLICY": "PASSIVE"}  # secrets travel as file paths, not environment
        workers = t.workers()
        relays: list[ProcessSpec] = []
        # In netns mode tbf on the veth caps the rate; the relay only adds the delay.
        rate_mbit = t.link.rate_gbps * 1000 if self.netns is None else 0
        prefix, _ = self._placement("pd")
        for w in self._relayed():
            argv = self._cli(
                "link", "--listen", w.kv_via_link, "--target", w.kv_direct,
                "--delay-ms", str(t.link.delay_ms), "--jitter-ms", str(t.link.jitter_ms),
                "--rate-mbit", str(rate_mbit), "--control", w.link_control,
                "--shared-link", str(self.link_timeline),
            )  # fmt: skip
            if self.metrics_base_port:
                argv += ["--metrics-port", str(self._relay_metrics_port(len(relays)))]
            # Ready once its control port answers (bound after the listen port); in netns mode
            # the host cannot reach the namespace's address, so no probe (as before).
            ready: Callable[[], bool] | None = None
            if self.netns is None:
                ready = partial(relay_answers, w.link_control)
            relays.append(ProcessSpec(self.relay_name(w), argv, env, ready=ready, prefix=prefix))
        worker_specs = []
        for index, w in enumerate(workers):
            kind = "prefill-worker" if w.kind == "prefill" else "pd-worker"
            prefix, ns = self._placement(w.kind)
            tls_probe = self.secrets.worker_probe(w.grpc, w.worker_id)
            if ns is None and tls_probe is not None:
                ready = tls_probe  # the plain probe cannot reach an mTLS port
            elif ns is None:
                ready = partial(grpc_ready, w.grpc)
            else:
                ready = partial(_port_open_in_ns, ns, w.grpc)
            argv = self._cli(kind, *self._worker_args(w, index + 1), *self.worker_args,
                             *self.secrets.worker_args(w.worker_id))  # fmt: skip
            worker_specs.append(ProcessSpec(w.worker_id, argv, env, ready=ready, prefix=prefix))
        prefix, _ = self._placement("pd")
        scheme, ca_file = self.secrets.http_scheme, self.secrets.ca_file
        ca = str(ca_file) if ca_file else None  # HTTPS under `tls`: verified against the dev CA
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
                *(["--model", t.model] if t.model else []),
                *self.secrets.router_args(),
            ),  # fmt: skip
            env,
            ready=lambda: http_ready(f"{scheme}://127.0.0.1:{t.http_port}/ready", ca),
            prefix=prefix,
            clean_exit_ends=True,
        )
        return [relays, worker_specs, [router]]

    def _forward(self) -> None:
        assert self.netns is not None
        fwd = NetnsForwarder()
        t = self.topo
        fwd.add(t.http_port, self.netns.ns_pd, ADDR_PD, t.http_port)
        fwd.add(t.router_grpc_port, self.netns.ns_pd, ADDR_PD, t.router_grpc_port)
        if self.metrics_base_port:
            for i, w in enumerate(t.workers()):
                port = self.metrics_base_port + i + 1
                _, ns = self._placement(w.kind)
                assert ns is not None
                fwd.add(port, ns, w.grpc.rsplit(":", 1)[0], port)
            for k, host in enumerate(self._relay_hosts()):
                port = self._relay_metrics_port(k)
                fwd.add(port, self.netns.ns_pd, host, port)
        for w in self._relayed():
            control_host, control_port = w.link_control.rsplit(":", 1)
            fwd.add(int(control_port), self.netns.ns_pd, control_host, int(control_port))
        fwd.start()
        self.forwarder = fwd

    @staticmethod
    def relay_name(w: WorkerAddress) -> str:
        """The supervisor's name for the relay in front of PD worker `w`."""
        return f"link-{w.worker_id}"

    def listeners(self) -> list[Listener]:
        """Every address the children will bind on this host (port_check.py checks them)."""
        t = self.topo
        out = [Listener("router", "HTTP", t.host, t.http_port),
               Listener("router", "gRPC", t.host, t.router_grpc_port)]  # fmt: skip
        for index, w in enumerate(t.workers()):
            out.append(Listener(w.worker_id, "gRPC", *_split(w.grpc)))
            out.append(Listener(w.worker_id, "KV receiver", *_split(w.kv_direct)))
            if self.metrics_base_port:
                host = _split(w.grpc)[0]
                out.append(
                    Listener(w.worker_id, "metrics", host, self.metrics_base_port + index + 1)
                )
        for k, w in enumerate(self._relayed()):
            name = self.relay_name(w)
            out.append(Listener(name, "listen", *_split(w.kv_via_link)))
            out.append(Listener(name, "control", *_split(w.link_control)))
            if self.metrics_base_port:
                host = _split(w.kv_via_link)[0]
                out.append(Listener(name, "metrics", host, self._relay_metrics_port(k)))
        return out

    def start(
        self,
        timeout_s: float = START_TIMEOUT_S,
        *,
        supervise: bool = False,
        restart_policy: RestartPolicy | None = None,
    ) -> Endpoints:
        """Start every group in order; with `supervise`, then restart children that die
        (supervisor.py) until `stop()` or until the supervisor ends the deployment."""
        listeners = self.listeners()
        exposed = ephemeral_listeners(listeners)
        if exposed:
            ports = sorted(lst.port for lst in exposed)
            log.warning("%d listening ports (%d-%d) lie in the kernel's ephemeral port range: an "
                        "outgoing connection may take one before its process binds it; a port "
                        "base below %d avoids that", len(ports), ports[0], ports[-1],
                        ephemeral_port_range()[0])  # fmt: skip
        if self.netns is None:
            busy = busy_ports(listeners)
            if busy:
                # Before any process starts: nothing to stop, and the cause is the first line.
                self.secrets.remove()
                raise PortsInUse("; ".join(b.message() for b in busy))
        try:
            if self.netns is not None:
                self.netns.up()
            self.topo = self._effective()
            self.topology_path.write_text(
                f"# Effective topology of {self.source_path} (overrides applied).\n"
                + self.topo.to_toml()
            )
            if self.netns is not None:
                self._forward()
            for group in self.specs():
                children = [self.supervisor.start(spec) for spec in group]
                for child in children:
                    self.supervisor.wait_ready(child, timeout_s)
            if supervise:
                self.supervisor.watch(restart_policy)
        except BaseException:
            self.stop()
            raise
        return self.endpoints()

    def endpoints(self) -> Endpoints:
        """Addresses as seen from this host (forwarded to loopback in netns mode)."""
        t = self.topo
        host = "127.0.0.1" if self.netns is not None else t.host
        scheme = self.secrets.http_scheme  # the router's HTTP port serves TLS under `tls`
        metrics = [f"{scheme}://{host}:{t.http_port}/metrics"]
        if self.metrics_base_port:
            metrics += [
                f"http://{host if self.netns else w.grpc.rsplit(':', 1)[0]}:{self.metrics_base_port + i + 1}/metrics"
                for i, w in enumerate(t.workers())
            ]
            metrics += [
                f"http://{'127.0.0.1' if self.netns else h}:{self._relay_metrics_port(k)}/metrics"
                for k, h in enumerate(self._relay_hosts())
            ]
        controls = {
            self.relay_name(w): f"{'127.0.0.1' if self.netns else w.link_control.rsplit(':', 1)[0]}"
            f":{w.link_control.rsplit(':', 1)[1]}"
            for w in self._relayed()
        }
        return Endpoints(
            f"{scheme}://{host}:{t.http_port}/v1", metrics, f"{host}:{t.router_grpc_port}", controls,
            self.metrics_names()[: len(metrics)],
        )  # fmt: skip

    def metrics_names(self) -> list[str]:
        """The process behind each `endpoints().metrics` URL, in the same order."""
        names = ["router", *(w.worker_id for w in self.topo.workers())]
        return names + [self.relay_name(w) for w in self._relayed()]

    def stop(self) -> None:
        self.supervisor.stop_all()
        self.secrets.remove()
        if self.forwarder is not None:
            self.forwarder.stop()
            self.forwarder = None
        if self.netns is not None:
            self.netns.down()
