"""Issues 5 and 6 acceptance on a real deployment: router + PrfaaS worker + PD workers + link relay.

Real processes, real gRPC and TCP, the official `openai` client, the tiny model.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from openai import OpenAI

from prfaas.launcher.deployment import Deployment
from tests.e2e.deployments import make_topology, start

PROMPTS = ["short one", "x" * 40, "The quick brown fox " * 30, "lorem ipsum dolor " * 50]


def metric_value(url: str, name: str, **labels: str) -> float:
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    total = 0.0
    for line in text.splitlines():
        named = line.startswith(name + "{") or line.startswith(name + " ")
        if named and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def complete_all(deployment: Deployment, max_tokens: int = 6) -> list[str]:
    client = OpenAI(
        base_url=deployment.endpoints().http, api_key="unused", max_retries=0, timeout=120
    )
    model = client.models.list().data[0].id
    out = []
    for prompt in PROMPTS:
        reply = client.completions.create(
            model=model,
            prompt=prompt,
            max_tokens=max_tokens,
            temperature=0,
            extra_body={"ignore_eos": True},
        )
        assert reply.usage.completion_tokens == max_tokens
        out.append(reply.choices[0].text)
    return out


@pytest.fixture(scope="module")
def prfaas_deployment(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    deployment = start(
        make_topology(policy="prfaas"), Path(tmp_path_factory.mktemp("prfaas")), metrics=True
    )
    try:
        yield deployment
    finally:
        deployment.stop()


def test_long_prompts_offload_and_short_stay_local(prfaas_deployment: Deployment) -> None:
    complete_all(prfaas_deployment)
    url = prfaas_deployment.endpoints().metrics[0]
    assert metric_value(url, "prfaas_routing_decisions_total", route="offload") >= 2
    assert metric_value(url, "prfaas_routing_decisions_total", route="local", reason="short") >= 2
    # The KV the PrfaaS worker sent is what the decode workers report as received (completed
    # transfers; both sides count the same declared layout bytes).
    workers = prfaas_deployment.endpoints().metrics[1:]
    sent = sum(metric_value(u, "prfaas_kv_transfer_sent_bytes_total") for u in workers)
    received = sum(metric_value(u, "prfaas_kv_transfer_received_bytes_total") for u in workers)
    assert sent > 0 and received == sent


def test_streaming_chat_through_the_deployment(prfaas_deployment: Deployment) -> None:
    client = OpenAI(base_url=prfaas_deployment.endpoints().http, api_key="unused", max_retries=0)
    model = client.models.list().data[0].id
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "tell me a story " * 40}],
        max_tokens=5,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"ignore_eos": True},
    )
    chunks = list(stream)
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5


@pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool not installed (Debian package prometheus)"
)
def test_every_process_metrics_pass_promtool(prfaas_deployment: Deployment) -> None:
    complete_all(prfaas_deployment, max_tokens=2)
    for url in prfaas_deployment.endpoints().metrics:
        text = urllib.request.urlopen(url, timeout=5).read()
        assert b"prfaas_" in text, url
        check = subprocess.run(
            ["promtool", "check", "metrics"], input=text, capture_output=True, check=False
        )
        assert check.returncode == 0, f"{url}: {check.stdout.decode()} {check.stderr.decode()}"


def test_same_greedy_outputs_all_local_and_all_remote(tmp_path: Path) -> None:
    outputs = {}
    for policy in ("homogeneous-pd", "naive-hetero"):
        deployment = start(make_topology(policy=policy), tmp_path / policy)
        try:
            outputs[policy] = complete_all(deployment)
            url = deployment.endpoints().metrics[0]
            route = "local" if policy == "homogeneous-pd" else "offload"
            assert metric_value(url, "prfaas_routing_decisions_total", route=route) == len(PROMPTS)
        finally:
            deployment.stop()
    assert outputs["homogeneous-pd"] == outputs["naive-hetero"]


def test_killed_prefill_worker_requests_complete_locally(tmp_path: Path) -> None:
    deployment = start(make_topology(policy="naive-hetero", backend="emulated"), tmp_path)
    try:
        prfaas = next(c for c in deployment.supervisor.children if c.spec.name == "prfaas-0")
        prfaas.popen.kill()
        prfaas.popen.wait()
        time.sleep(0.5)
        client = OpenAI(
            base_url=deployment.endpoints().http, api_key="unused", max_retries=0, timeout=60
        )
        model = client.models.list().data[0].id
        for prompt in PROMPTS:
            reply = client.completions.create(
                model=model, prompt=prompt, max_tokens=3, extra_body={"ignore_eos": True}
            )
            assert reply.usage.completion_tokens == 3
        url = deployment.endpoints().metrics[0]
        assert metric_value(url, "prfaas_routing_decisions_total", route="local") == len(PROMPTS)
    finally:
        deployment.stop()


def test_client_disconnect_aborts_everywhere(prfaas_deployment: Deployment) -> None:
    """A client that goes away mid-stream frees the request on the router and every worker."""
    import asyncio

    import httpx

    from tests.e2e.processes import WorkerProc, wait_leak_free

    body = {
        "model": "prfaas-tiny",
        "prompt": "disconnect me " * 60,
        "max_tokens": 3000,
        "stream": True,
        "ignore_eos": True,
    }
    url = prfaas_deployment.endpoints().http + "/completions"
    with httpx.Client(timeout=60) as client, client.stream("POST", url, json=body) as reply:
        assert reply.status_code == 200
        chunks = 0
        for line in reply.iter_lines():
            if line.startswith("data: "):
                chunks += 1
            if chunks >= 5:
                break
    # Generating the remaining ~3000 tokens takes ~11.5 s on an idle machine (longer under load),
    # so an empty report within this window means the disconnect aborted the request rather than
    # it finishing; the window leaves room for a loaded CI box to notice the disconnect.
    deadline = time.monotonic() + 6.0  # one window for all workers together
    for w in prfaas_deployment.topo.workers():
        kind = "prefill" if w.kind == "prefill" else "pd"
        creds = prfaas_deployment.secrets.credentials()  # the launcher's token, as the router
        proc = WorkerProc(w.worker_id, w.grpc, kind, credentials=creds)
        remaining = max(0.1, deadline - time.monotonic())
        load = asyncio.run(wait_leak_free(proc, timeout_s=remaining))
        assert load.leak_report == "", f"{w.worker_id}: {load.leak_report}"
        assert load.num_live_requests == 0
