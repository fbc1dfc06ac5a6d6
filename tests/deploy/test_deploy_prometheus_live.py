"""A real Prometheus server scraping a running `prfaas up` deployment: every dashboard query
returns data.

Slow. The deployment prints its metrics URLs (issue 6:
"prints the endpoint and metrics URLs"); this test collects every `http://HOST:PORT/metrics` URL
from its output, renders a Prometheus config for them with deploy/prometheus/promconfig.py (the
same helper the compose config comes from), drives short and long (offloaded, repeated:
prefix-hit) requests through the HTTP endpoint, then evaluates each panel's query through the
Prometheus HTTP API.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from deploy_helpers import REPO, load_module, panel_queries, substitute_grafana_vars

from prfaas.launcher.probes import free_port
from prfaas.topology import DEFAULT_TOPOLOGY, load_topology

pytestmark = pytest.mark.slow

PROMETHEUS = "/usr/bin/prometheus"
SCRAPE_INTERVAL = "1s"
RATE_WINDOW = "30s"
STARTUP_TIMEOUT_S = 240.0
# Panels that legitimately have no series on a healthy run: their counters only get a child
# when the event happens (see the report of issue 7).
MAY_BE_EMPTY = {
    ("overview.json", "HTTP errors"),
    ("kv-transfer.json", "Transfer failures"),
}
_URL = re.compile(r"https?://[A-Za-z0-9_.\-]+:[0-9]+/metrics\b")


def _get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, OSError):
        return 0, b""


def _post_json(url: str, body: dict[str, object], timeout: float = 120.0) -> int:
    req = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            resp.read()
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _topology(tmp_path: Path) -> tuple[Path, int, int]:
    """deploy/local.toml moved to free ports (a block above 20000 for the per-worker bases)."""
    base = free_port() % 20000 + 20000
    http_port = free_port()
    values = {
        ("router", "http_port"): http_port,
        ("router", "grpc_port"): free_port(),
        ("prfaas", "grpc_base_port"): base + 100,
        ("pd", "grpc_base_port"): base + 200,
        ("pd", "kv_base_port"): base + 300,
        ("pd", "link_base_port"): base + 400,
    }
    lines, section = [], ""
    for line in DEFAULT_TOPOLOGY.read_text().splitlines():
        if line.startswith("["):
            section = line.strip("[] ")
        key = line.split("=", 1)[0].strip()
        if (section, key) in values:
            line = f"{key} = {values[section, key]}"
        elif section == "emulated" and key.endswith("_profile"):
            relative = line.split("=", 1)[1].split("#")[0].strip().strip('"')
            line = f'{key} = "{(DEFAULT_TOPOLOGY.parent / relative).resolve()}"'
        lines.append(line)
    path = tmp_path / "topology.toml"
    path.write_text("\n".join(lines) + "\n")
    assert load_topology(path).http_port == http_port
    return path, http_port, base + 500


@contextlib.contextmanager
def _process(argv: list[str], log: Path, env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    with log.open("w") as out:
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=REPO,
            start_new_session=True,
        )
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=10)


def _wait_ready(proc: subprocess.Popen[str], log: Path, http_port: int) -> list[str]:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"`prfaas up` exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        status, _ = _get(f"http://127.0.0.1:{http_port}/ready")
        urls = sorted(set(_URL.findall(log.read_text())))
        if status == 200 and urls:
            return urls
        time.sleep(1.0)
    pytest.fail(f"deployment not ready in {STARTUP_TIMEOUT_S:.0f}s:\n{log.read_text()[-4000:]}")


def _drive_load(http_port: int, seconds: float) -> None:
    """Short prompts (routed locally) and one long repeated prompt (offloaded, then prefix hits),
    spread over `seconds` so every rate window sees several scrapes."""
    status, body = _get(f"http://127.0.0.1:{http_port}/v1/models")
    assert status == 200, body[:500]
    model = json.loads(body)["data"][0]["id"]
    url = f"http://127.0.0.1:{http_port}/v1/completions"
    long_prompt = "the quick brown fox jumps over the lazy dog " * 60  # > t=512 tokens
    statuses: list[int] = []

    def one(i: int) -> None:
        prompt = long_prompt if i % 2 else f"hello {i}"
        body = {"model": model, "prompt": prompt, "max_tokens": 8, "ignore_eos": True}
        statuses.append(_post_json(url, body))

    end = time.monotonic() + seconds
    threads, i = [], 0
    while time.monotonic() < end:
        t = threading.Thread(target=one, args=(i,))
        t.start()
        threads.append(t)
        i += 1
        time.sleep(0.5)
    for t in threads:
        t.join(timeout=180)
    assert statuses and all(s == 200 for s in statuses), statuses


def _query(prom_port: int, expr: str) -> list[object]:
    url = f"http://127.0.0.1:{prom_port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    status, body = _get(url, timeout=10)
    assert status == 200, body[:500]
    payload = json.loads(body)
    assert payload["status"] == "success", payload
    return list(payload["data"]["result"])


def test_every_panel_query_returns_data(tmp_path: Path) -> None:
    if not os.path.exists(PROMETHEUS):
        pytest.skip(f"{PROMETHEUS} is missing (Debian package `prometheus`)")
    topology, http_port, metrics_base = _topology(tmp_path)
    env = {**os.environ, "PRFAAS_KV_SECRET": "live-dashboard-test", "OMP_WAIT_POLICY": "PASSIVE"}
    prfaas = [
        *(sys.executable, "-m", "prfaas.cli", "up", str(topology)),
        *("--backend", os.environ.get("PRFAAS_LIVE_BACKEND", "torch")),
        *("--metrics-base-port", str(metrics_base), "--log-dir", str(tmp_path / "logs")),
    ]
    promconfig = load_module(REPO / "deploy" / "prometheus" / "promconfig.py")
    prom_port = free_port()
    with _process(prfaas, tmp_path / "up.log", env) as up:
        urls = _wait_ready(up, tmp_path / "up.log", http_port)
        jobs = promconfig.jobs_from_urls({"prfaas": urls})
        (tmp_path / "prometheus.yml").write_text(
            promconfig.render_config(jobs, scrape_interval=SCRAPE_INTERVAL)
        )
        prom_argv = [
            shutil.which("prometheus") or PROMETHEUS,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ]
        with _process(prom_argv, tmp_path / "prometheus.log", dict(os.environ)) as prom:
            deadline = time.monotonic() + 30
            while _get(f"http://127.0.0.1:{prom_port}/-/ready")[0] != 200:
                assert prom.poll() is None, (tmp_path / "prometheus.log").read_text()[-2000:]
                assert time.monotonic() < deadline, "prometheus did not become ready"
                time.sleep(0.5)
            _drive_load(http_port, seconds=20)
            time.sleep(5)  # a few more scrapes after the last request
            targets = json.loads(_get(f"http://127.0.0.1:{prom_port}/api/v1/targets")[1])
            down = [t["scrapeUrl"] for t in targets["data"]["activeTargets"] if t["health"] != "up"]
            assert not down, f"targets not scraped: {down}"
            empty = []
            for q in panel_queries():
                expr = substitute_grafana_vars(q.expr, RATE_WINDOW)
                if not _query(prom_port, expr) and (q.dashboard, q.panel) not in MAY_BE_EMPTY:
                    empty.append(f"{q.dashboard} / {q.panel}: {expr}")
            assert not empty, "panel queries without data:\n" + "\n".join(empty)
