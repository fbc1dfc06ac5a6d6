"""`prfaas bench router-security`: what mTLS + HTTPS + an API key add to a request through the
real router process, against the same router without them, in the same run.

Two `prfaas router` processes run side by side, each driving one instant fake `mixed` worker
(router_overhead.InstantWorker: Admitted, one token, Finished, at once) in this process:
  plain   HTTP, gRPC to the worker with no credentials (loopback);
  secure  HTTPS (dev CA) with an API key, mutual TLS on gRPC to the worker (what `prfaas up
          --secure` gives the router).
Requests alternate plain, secure, plain, ... (one completion of one token each, same prompt), so
both see the same machine load. Keep-alive connections (the TLS handshake paid once, as an SDK
client pays it) and, separately, a new connection per request (handshake included). Reports p50
and p99 of each, the ratio secure/plain and the difference of the p50s, and the load average.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc
import httpx
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from prfaas._proto.prfaas.v1 import worker_pb2, worker_pb2_grpc
from prfaas.launcher.probes import free_port, http_ready
from prfaas.security import certs, identities
from prfaas.security.secret_files import write_private
from prfaas.tools.benchmarks.router_overhead import InstantWorker
from prfaas.topology import Topology

WORKER_ID = "pd-0"
BODY = {"model": "prfaas-tiny", "prompt": "The quick brown fox " * 20, "max_tokens": 1,
        "temperature": 0}  # fmt: skip


class _Worker(InstantWorker):
    async def GetLoad(self, request, context) -> worker_pb2.WorkerLoad:  # noqa: N802, ANN001
        return worker_pb2.WorkerLoad(worker_id=WORKER_ID, cluster="pd", role="mixed",
                                     max_num_seqs=256)  # fmt: skip


async def _serve_worker(port: int, tls: certs.CertFiles | None) -> grpc.aio.Server:
    server = grpc.aio.server()
    worker_pb2_grpc.add_WorkerServicer_to_server(_Worker(), server)
    health_servicer = health.aio.HealthServicer()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    address = f"127.0.0.1:{port}"
    if tls is None:
        server.add_insecure_port(address)
    else:
        creds = grpc.ssl_server_credentials(
            [(tls.key.read_bytes(), tls.cert.read_bytes())],
            root_certificates=tls.ca.read_bytes(), require_client_auth=True,
        )  # fmt: skip
        server.add_secure_port(address, creds)
    await server.start()
    return server


def _start_workers(servers: list[tuple[int, certs.CertFiles | None]]) -> asyncio.AbstractEventLoop:
    """Both fake workers on one event loop in a background thread (the client is synchronous)."""
    loop = asyncio.new_event_loop()
    started = threading.Event()

    def main() -> None:
        asyncio.set_event_loop(loop)
        # Held for the loop's life: a grpc.aio server that is garbage-collected stops serving.
        running = [loop.run_until_complete(_serve_worker(port, tls)) for port, tls in servers]
        started.set()
        loop.run_forever()
        del running

    threading.Thread(target=main, daemon=True).start()
    started.wait(30)
    return loop


def _router(
    tmp: Path, name: str, worker_port: int, extra: list[str]
) -> tuple[subprocess.Popen, int]:
    http_port = free_port()
    topo = Topology(backend="emulated", policy="homogeneous-pd", model_preset="tiny",
                    http_port=http_port, router_grpc_port=free_port(), prfaas_workers=0,
                    pd_roles=("mixed",), pd_grpc_base_port=worker_port,
                    pd_kv_base_port=free_port())  # fmt: skip
    topo_file = tmp / f"{name}.toml"
    topo_file.write_text(topo.to_toml())
    log = (tmp / f"{name}.log").open("w")
    argv = [sys.executable, "-m", "prfaas.cli", "router", "--topology", str(topo_file),
            "--log-level", "WARNING", *extra]  # fmt: skip
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
    return proc, http_port


def _wait_ready(url: str, ca: str | None, proc: subprocess.Popen, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not http_ready(url, ca):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"router for {url} did not become ready (exit {proc.poll()})")
        time.sleep(0.2)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _summary(plain: list[float], secure: list[float]) -> dict[str, float]:
    p50, s50 = statistics.median(plain), statistics.median(secure)
    return {
        "plain_p50_ms": p50 * 1e3, "plain_p99_ms": _pct(plain, 0.99) * 1e3,
        "secure_p50_ms": s50 * 1e3, "secure_p99_ms": _pct(secure, 0.99) * 1e3,
        "secure_over_plain_p50": s50 / p50,
        "secure_over_plain_p99": _pct(secure, 0.99) / _pct(plain, 0.99),
        "added_p50_ms": (s50 - p50) * 1e3,
    }  # fmt: skip


def _timed(client: httpx.Client, url: str, headers: dict[str, str]) -> float:
    t0 = time.perf_counter()
    reply = client.post(url, json=BODY, headers=headers)
    elapsed = time.perf_counter() - t0
    if reply.status_code != 200:
        raise RuntimeError(f"{url}: {reply.status_code} {reply.text[:200]}")
    return elapsed


def measure(requests: int, fresh_requests: int) -> dict[str, object]:
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="prfaas-bench-security-") as tmp_name:
        tmp = Path(tmp_name)
        ca = certs.new_authority()
        router_files = certs.write_identity(ca, identities.ROUTER, tmp / "tls")
        worker_files = certs.write_identity(ca, identities.worker(WORKER_ID), tmp / "tls")
        key = "bench-key"
        keys = write_private(tmp / "api.keys", key.encode())
        plain_worker, secure_worker = free_port(), free_port()
        loop = _start_workers([(plain_worker, None), (secure_worker, worker_files)])
        secure_args = ["--tls-cert", str(router_files.cert), "--tls-key", str(router_files.key),
                       "--tls-ca", str(router_files.ca), "--https-cert", str(router_files.cert),
                       "--https-key", str(router_files.key), "--api-key-file", str(keys)]  # fmt: skip
        plain_proc, plain_port = _router(tmp, "plain", plain_worker, [])
        secure_proc, secure_port = _router(tmp, "secure", secure_worker, secure_args)
        try:
            plain_url = f"http://127.0.0.1:{plain_port}"
            secure_url = f"https://127.0.0.1:{secure_port}"
            _wait_ready(plain_url + "/ready", None, plain_proc)
            _wait_ready(secure_url + "/ready", str(router_files.ca), secure_proc)
            trust = ssl.create_default_context(cafile=str(router_files.ca))
            auth = {"Authorization": f"Bearer {key}"}
            results: dict[str, object] = {}
            with httpx.Client(timeout=30) as pc, httpx.Client(timeout=30, verify=trust) as sc:
                for _ in range(20):  # warm both paths (connections, first-request costs)
                    _timed(pc, plain_url + "/v1/completions", {})
                    _timed(sc, secure_url + "/v1/completions", auth)
                plain, secure = [], []
                for _ in range(requests):
                    plain.append(_timed(pc, plain_url + "/v1/completions", {}))
                    secure.append(_timed(sc, secure_url + "/v1/completions", auth))
            results["keep_alive"] = _summary(plain, secure)
            plain, secure = [], []
            for _ in range(fresh_requests):  # a new TCP (+ TLS) connection per request
                with httpx.Client(timeout=30) as pc:
                    plain.append(_timed(pc, plain_url + "/v1/completions", {}))
                with httpx.Client(timeout=30, verify=trust) as sc:
                    secure.append(_timed(sc, secure_url + "/v1/completions", auth))
            results["new_connection"] = _summary(plain, secure)
        finally:
            for proc in (plain_proc, secure_proc):
                proc.terminate()
            for proc in (plain_proc, secure_proc):
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            loop.call_soon_threadsafe(loop.stop)
    results.update(requests=requests, fresh_requests=fresh_requests,
                   load_average_before=load_before, load_average_after=os.getloadavg()[0])  # fmt: skip
    return results


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--requests", type=int, default=400, help="keep-alive request pairs")
    parser.add_argument("--fresh-requests", type=int, default=100, help="new-connection pairs")


def run(args: argparse.Namespace) -> int:
    print(json.dumps(measure(args.requests, args.fresh_requests), indent=2))
    return 0
