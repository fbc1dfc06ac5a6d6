"""`/metrics` of the HTTP front end after real traffic."""

from __future__ import annotations

import shutil
import subprocess
from typing import TYPE_CHECKING

import httpx
import pytest

if TYPE_CHECKING:
    from conftest import Served

MODEL = "fake-model"


def test_metrics_after_traffic(served: Served) -> None:
    client = served.client()
    client.completions.create(model=MODEL, prompt="abc", max_tokens=5)
    list(client.completions.create(model=MODEL, prompt="abc", max_tokens=3, stream=True))
    httpx.post(f"{served.url}/v1/completions", json={"model": "nope", "prompt": "p"})
    r = httpx.get(f"{served.url}/metrics")
    assert r.status_code == 200
    text = r.text
    value = served.metrics.registry.get_sample_value
    labels = {"model_name": MODEL}
    assert value("prfaas_time_to_first_token_seconds_count", labels) == 2
    assert value("prfaas_e2e_request_latency_seconds_count", labels) == 2
    assert value("prfaas_inter_token_latency_seconds_count", labels) == 4 + 2
    assert value("prfaas_prompt_tokens_total", labels) == 8
    assert value("prfaas_generation_tokens_total", labels) == 8
    assert value("prfaas_prompt_cached_tokens_total", labels) == 4
    assert value("prfaas_request_success_total", {**labels, "finished_reason": "length"}) == 2
    assert value("prfaas_http_errors_total", {"status_code": "404"}) == 1
    for name in ("prfaas_time_to_first_token_seconds", "prfaas_generation_tokens_total"):
        assert f"# TYPE {name.removesuffix('_total')}" in text
    # Request ids never become label values.
    for request in served.backend.requests:
        assert request.request_id not in text
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip(
            "promtool not installed (Debian package `prometheus`: apt-get install -y prometheus)"
        )
    result = subprocess.run(
        [promtool, "check", "metrics"], input=r.content, capture_output=True, timeout=60
    )
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
