"""The router's context limit comes from its workers (`WorkerLoad.max_context`): the smallest over
the healthy ones once any reports, the configured value before; the HTTP layer (`max_model_len`
in /v1/models, the 400 for a too-long request) follows it per request."""

from __future__ import annotations

import httpx
from fake_workers import FakeCluster, start_cluster
from test_dispatch_failures import wait_for

from prfaas.router.http_api import create_app
from prfaas.tokenizer.byte_level import BytePromptTokenizer

CONFIGURED = 4096


def report(c: FakeCluster, limits: dict[str, int]) -> None:
    for worker_id, limit in limits.items():
        c.worker(worker_id).script.load = {"max_context": limit, "model_name": "tiny-qwen35"}


def reported(c: FakeCluster, worker_id: str) -> bool:
    state = c.registry.get(worker_id)
    return state is not None and state.load is not None and state.load.max_context > 0


async def test_limit_is_the_smallest_healthy_workers_and_configured_before_any_report() -> None:
    c = await start_cluster(max_context=CONFIGURED)
    try:
        # The fakes report 0 ("unknown") until scripted: the configured limit holds.
        assert c.dispatcher.max_context == CONFIGURED
        report(c, {"pd-0": 3000, "pd-1": 2048, "prfaas-0": 8192})
        # Every worker's report must be in before one leaves placement: the limit reads 2048 as
        # soon as pd-1 reports, while pd-0 may still report 0 ("unknown").
        await wait_for(lambda: all(reported(c, w) for w in ("pd-0", "pd-1", "prfaas-0")))
        assert c.dispatcher.max_context == 2048
        load = c.registry.get("pd-1").load  # type: ignore[union-attr]
        assert load is not None and load.model_name == "tiny-qwen35"
        # The smallest reporter goes out of placement: the limit is the remaining workers' min.
        c.registry.get("pd-1").healthy = False  # type: ignore[union-attr]
        assert c.dispatcher.max_context == 3000
    finally:
        await c.close()


async def test_http_validation_and_models_list_follow_the_workers_limit() -> None:
    c = await start_cluster(max_context=CONFIGURED)
    app = create_app(c.dispatcher, BytePromptTokenizer())
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://router") as client:
            before = (await client.get("/v1/models")).json()["data"][0]["max_model_len"]
            assert before == CONFIGURED
            report(c, {"pd-0": 512, "pd-1": 512, "prfaas-0": 512})
            await wait_for(lambda: c.dispatcher.max_context == 512)
            models = (await client.get("/v1/models")).json()
            assert models["data"][0]["max_model_len"] == 512
            # 100 prompt tokens + 500 completion tokens fit the configured 4096, not the 512.
            body = {"model": "fake", "prompt": "x" * 99, "max_tokens": 500}
            response = await client.post("/v1/completions", json=body)
            assert response.status_code == 400
            assert "maximum context length is 512 tokens" in response.json()["error"]["message"]
            body["max_tokens"] = 4
            assert (await client.post("/v1/completions", json=body)).status_code == 200
    finally:
        await c.close()
