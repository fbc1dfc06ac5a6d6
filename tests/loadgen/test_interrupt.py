"""Ctrl-C during `prfaas bench serve` keeps what finished: a real subprocess gets SIGINT while
requests are in flight and more are scheduled; it writes the finished ones to run.json, prints the
summary and says what was cancelled and never sent, and exits 130."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from pathlib import Path

from prfaas.router.generation_backend import FakeBackend, GenerationEvent, GenerationRequest
from tests.router.conftest import serve_app


@dataclass
class StartCounter(FakeBackend):
    """A FakeBackend that counts the requests it has begun to answer."""

    started: int = 0

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[GenerationEvent, None]:
        self.started += 1
        async for event in super().generate(request):
            yield event


def _sigint_default() -> None:
    """In the child before exec: SIGINT back to its default. A test run started in the background
    (`cmd &` without job control) inherits SIGINT ignored, and Python then installs no
    KeyboardInterrupt handler, so the Ctrl-C this test plays would be dropped (as it is, by
    design, for any background job); the test is about Ctrl-C at a terminal."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_sigint_keeps_and_reports_the_finished_requests(tmp_path: Path) -> None:
    backend = StartCounter(token_delay_s=0.05)  # 8 output tokens: ~0.4 s a request
    with serve_app(backend) as served:
        argv = [
            sys.executable, "-m", "prfaas.cli", "bench", "serve", "--url", f"{served.url}/v1",
            "-n", "200", "--rate", "10", "--length-scale", "0.001", "--max-input-tokens", "200",
            "--output-tokens", "8", "--no-progress", "--out-dir", str(tmp_path),
        ]  # fmt: skip
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=_sigint_default)  # fmt: skip
        deadline = time.monotonic() + 120
        while backend.started < 10:  # ~1 s in: some finished, 19 s of sends still ahead
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no request finished"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err
    assert "Traceback" not in err, err
    saved = json.loads((tmp_path / "run.json").read_text())
    counts = saved["config"]["interrupted"]
    assert counts["finished"] == len(saved["requests"]) >= 1
    assert counts["never_sent"] > 0
    assert counts["finished"] + counts["cancelled_in_flight"] + counts["never_sent"] == 200
    assert all(r["status"] == 200 for r in saved["requests"])
    assert f"| run | {counts['finished']}/{counts['finished']} |" in out  # the summary table
    assert (
        f"interrupted (Ctrl-C) during the run: kept the {counts['finished']} requests that "
        f"finished; {counts['cancelled_in_flight']} in flight were cancelled, "
        f"{counts['never_sent']} never sent"
    ) in err
