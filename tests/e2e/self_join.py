"""Real processes for the self-registration tests: a router that starts with no workers
(`--workers registered`) and emulated workers that join it with `--router`."""

from __future__ import annotations

import json
import re
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from prfaas.data import case_study_file
from prfaas.launcher.probes import free_port, grpc_ready, http_ready
from prfaas.launcher.supervisor import Child, ProcessSpec, Supervisor

PROFILE = str(case_study_file("h20_8gpu_prefill.csv"))
ENV = {"OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1"}


@dataclass
class RouterAddress:
    http_port: int
    grpc_port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"


def router_topology(directory: Path) -> Path:
    """The router's settings without workers (what a Kubernetes ConfigMap would hold)."""
    path = directory / "router.toml"
    path.write_text(
        '[deployment]\nbackend = "emulated"\nmodel_preset = "small"\n'
        f'[emulated]\nprfaas_profile = "{case_study_file("h200_8gpu_prefill.csv")}"\n'
        f'pd_profile = "{PROFILE}"\n'
    )
    return path


def router_spec(name: str, address: RouterAddress, topology: Path) -> ProcessSpec:
    argv = [sys.executable, "-m", "prfaas.cli", "router", "--workers", "registered"]
    argv += ["--topology", str(topology)]
    argv += ["--http-port", str(address.http_port), "--grpc-port", str(address.grpc_port)]
    argv += ["--policy", "prfaas", "--threshold", "256"]
    return ProcessSpec(name, argv, env=ENV, ready=lambda: http_ready(f"{address.url}/health"))


def worker_spec(
    kind: str, worker_id: str, routers: str, role: str = "", extra: tuple[str, ...] = ()
) -> ProcessSpec:
    """An emulated worker registering with `routers` every 0.3 s (drains within 2 s); `extra`
    options follow the others."""
    port = free_port()
    argv = [sys.executable, "-m", "prfaas.cli", f"{kind}-worker", "--worker-id", worker_id]
    argv += ["--grpc-port", str(port), "--backend", "emulated", "--profile", PROFILE]
    argv += ["--time-factor", "0.001", "--block-size", "64", "--decode-step-ms", "20"]
    argv += ["--router", routers, "--register-interval-s", "0.3", "--drain-timeout-s", "10"]
    argv += ["--cluster", "prfaas" if kind == "prefill" else "pd"]
    if kind == "pd":
        argv += ["--role", role, "--kv-port", str(free_port())]
    argv += extra
    return ProcessSpec(worker_id, argv, env=ENV, ready=lambda: grpc_ready(f"127.0.0.1:{port}"))


def start_all(sup: Supervisor, specs: list[ProcessSpec], timeout_s: float = 60) -> list[Child]:
    children = [sup.start(spec) for spec in specs]  # start together: 2 cores, slow imports
    for child in children:
        sup.wait_ready(child, timeout_s)
    return children


def complete(url: str, prompt: str, max_tokens: int, timeout_s: float = 30) -> dict:
    body = {"model": "prfaas-small", "prompt": prompt, "max_tokens": max_tokens}
    body |= {"temperature": 0, "ignore_eos": True}
    req = urllib.request.Request(f"{url}/v1/completions", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(req, timeout=timeout_s) as resp:
        return json.loads(resp.read())


def wait_ready(url: str, timeout_s: float = 30) -> float:
    """Seconds until the router's /ready answers 200 (its needed workers are healthy)."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        try:
            with urllib.request.urlopen(f"{url}/ready", timeout=2):
                return time.monotonic() - start
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    raise TimeoutError(f"{url} not ready after {timeout_s} s")


def wait_joined(url: str, workers: int, timeout_s: float = 30) -> None:
    """Until `workers` workers are healthy at the router. /ready means only that some request
    can be placed: a worker that registers a moment later (2 cores, slow imports) is not yet
    there, and a long prompt sent before the PrfaaS worker joins is served locally."""
    deadline = time.monotonic() + timeout_s
    while metric(url, "prfaas_router_worker_healthy") < workers:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url}: {workers} workers did not join in {timeout_s} s")
        time.sleep(0.1)


def metric(url: str, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels` (0 when none)."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    total = 0.0
    for line in text.splitlines():
        m = re.match(rf"{name}(?:\{{(.*)\}})? (\S+)$", line)
        if m and all(f'{k}="{v}"' in (m.group(1) or "") for k, v in labels.items()):
            total += float(m.group(2))
    return total
