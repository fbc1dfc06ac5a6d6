"""`prfaas bench serve` against what is really there: no server, a workload longer than the model's
context, and requests that fail all end with a non-zero status and a message saying why."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from prfaas.cli import main


class _Server(BaseHTTPRequestHandler):
    """/v1/models of a 4096-token model; every completion answered 503."""

    def do_GET(self) -> None:  # noqa: N802
        body = json.dumps({"data": [{"id": "prfaas-small", "max_model_len": 4096}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = b'{"error": {"message": "no workers"}}'
        self.send_response(503)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Server)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_no_server_is_exit_2_with_advice(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "serve", "--url", "http://127.0.0.1:9/v1", "-n", "2"]) == 2
    assert "no server answers at http://127.0.0.1:9/v1" in capsys.readouterr().err


def test_paper_lengths_on_a_short_context_are_refused_with_a_scale(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", "serve", "--url", url, "-n", "4", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "but prfaas-small serves 4096: scale the workload (--length-scale 0." in err


def test_failed_requests_are_exit_1(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["bench", "serve", "--url", url, "-n", "3", "--rate", "50", "--length-scale", "0.01",
            "--max-input-tokens", "1000", "--output-tokens", "4", "--no-progress",
            "--out-dir", str(tmp_path)]  # fmt: skip
    assert main(argv) == 1
    assert "3 of 3 requests failed (HTTP 503: 3)" in capsys.readouterr().err
