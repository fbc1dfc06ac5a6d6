"""Tools trust the dev CA of a `prfaas up --tls` router with `--ca-file` (or PRFAAS_<CMD>_CA_FILE):
`prfaas top` and `prfaas bench serve` as real subprocesses against an HTTPS server (a router's
/metrics and /v1/models; completions answered 503) whose certificate a fresh dev CA signed."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from prfaas.metrics import RouterMetrics
from prfaas.security.certs import issue, new_authority
from prfaas.security.https import trust_ca_file
from prfaas.security.identities import ROUTER
from tests.loadgen.test_preflight import _Server as ModelsThen503


def _metrics_page() -> bytes:
    registry = CollectorRegistry()
    RouterMetrics(registry, "prfaas-small")
    return generate_latest(registry)


@pytest.fixture(scope="module")
def https_router(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(host:port of an HTTPS server answering /metrics and /v1/models like a router, the CA)."""
    tmp = tmp_path_factory.mktemp("ca")
    ca = new_authority()
    cert, key = issue(ca, ROUTER, ("127.0.0.1",))
    (tmp / "ca.pem").write_bytes(ca.pem)
    (tmp / "router.pem").write_bytes(cert)
    (tmp / "router.key").write_bytes(key)
    metrics = _metrics_page()

    class Handler(ModelsThen503):  # /v1/models of a 4096-token model; completions 503
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            if self.path != "/metrics":
                return super().do_GET()
            self.send_response(200)
            self.send_header("Content-Length", str(len(metrics)))
            self.end_headers()
            self.wfile.write(metrics)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp / "router.pem", tmp / "router.key")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}", tmp / "ca.pem"
    server.shutdown()
    server.server_close()


def _prfaas(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items()
            if k != "SSL_CERT_FILE" and not k.endswith("_CA_FILE")}  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "prfaas.cli", *args],
        capture_output=True, text=True, timeout=120, env={**base, **(env or {})},
    )  # fmt: skip


def _top(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return _prfaas("top", "--once", "--interval", "0.2", *args, env=env)


def _bench(url: str, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return _prfaas("bench", "serve", "--url", url, "-n", "3", "--rate", "50", "--length-scale",
                   "0.01", "--max-input-tokens", "1000", "--output-tokens", "4", "--no-progress",
                   "--out-dir", str(tmp), *args)  # fmt: skip


def test_top_trusts_the_dev_ca_given_by_option(https_router: tuple[str, Path]) -> None:
    address, ca = https_router
    done = _top("--router", address, "--ca-file", str(ca))  # bare host:port + a CA: https
    assert done.returncode == 0, done.stdout + done.stderr


def test_top_trusts_the_dev_ca_given_by_environment(https_router: tuple[str, Path]) -> None:
    address, ca = https_router
    done = _top("--router", f"https://{address}", env={"PRFAAS_TOP_CA_FILE": str(ca)})
    assert done.returncode == 0, done.stdout + done.stderr


def test_without_the_ca_the_router_is_unverified_and_down(https_router: tuple[str, Path]) -> None:
    address, _ = https_router
    done = _top("--router", f"https://{address}")
    assert done.returncode == 1, done.stdout + done.stderr


def test_a_file_that_is_not_a_ca_is_one_line(tmp_path: Path) -> None:
    bogus = tmp_path / "ca.pem"
    bogus.write_text("not a certificate")
    with pytest.raises(SystemExit, match="not a readable PEM CA bundle"):
        trust_ca_file(str(bogus))


def test_bench_serve_reaches_the_https_router_with_the_ca(
    https_router: tuple[str, Path], tmp_path: Path
) -> None:
    address, ca = https_router
    done = _bench(f"https://{address}/v1", tmp_path, "--ca-file", str(ca))
    # Verified TLS all the way: the probe read /v1/models and every completion got the server's
    # own answer (503), so the run ends as a run with failed requests, not as no server.
    assert done.returncode == 1, done.stdout + done.stderr
    assert "3 of 3 requests failed (HTTP 503: 3)" in done.stderr


def test_bench_serve_without_the_ca_finds_no_server(
    https_router: tuple[str, Path], tmp_path: Path
) -> None:
    address, _ = https_router
    done = _bench(f"https://{address}/v1", tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
