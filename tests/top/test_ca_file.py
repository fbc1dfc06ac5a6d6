"""Tools trust the dev CA of a `prfaas up --tls` router with `--ca-file` (or PRFAAS_<CMD>_CA_FILE):
`prfaas top` as a real subprocess against an HTTPS /metrics whose certificate the dev CA signed."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from prfaas.metrics import RouterMetrics
from prfaas.security.certs import issue, new_authority
from prfaas.security.https import trust_ca_file
from prfaas.security.identities import ROUTER


def _metrics_page() -> bytes:
    registry = CollectorRegistry()
    RouterMetrics(registry, "prfaas-small")
    return generate_latest(registry)


@pytest.fixture(scope="module")
def https_router(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(host:port of an HTTPS server answering /metrics like a router, the CA file)."""
    tmp = tmp_path_factory.mktemp("ca")
    ca = new_authority()
    cert, key = issue(ca, ROUTER, ("127.0.0.1",))
    (tmp / "ca.pem").write_bytes(ca.pem)
    (tmp / "router.pem").write_bytes(cert)
    (tmp / "router.key").write_bytes(key)
    page = _metrics_page()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            self.send_response(200 if self.path == "/metrics" else 404)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.end_headers()
            self.wfile.write(page if self.path == "/metrics" else b"")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp / "router.pem", tmp / "router.key")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}", tmp / "ca.pem"
    server.shutdown()
    server.server_close()


def _top(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("SSL_CERT_FILE", "PRFAAS_TOP_CA_FILE")}
    return subprocess.run(
        [sys.executable, "-m", "prfaas.cli", "top", "--once", "--interval", "0.2", *args],
        capture_output=True, text=True, timeout=120, env={**base, **(env or {})},
    )  # fmt: skip


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
