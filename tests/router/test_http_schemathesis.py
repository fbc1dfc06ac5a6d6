"""Schemathesis against the live router: no generated request may get a 5xx (issue 10).

The router under test is the real one (HTTP app, dispatcher, gRPC to its workers) over fake gRPC
workers (`fake_workers.py`), served by uvicorn on a thread of its own. Schemathesis reads
`/openapi.json` and, for every operation, sends a bounded number of generated requests (valid ones
and ones that break the schema on purpose); its `not_a_server_error` check fails on any 5xx.
Bounded (50 examples per operation and mode, about 30 s on 2 cores) to run in `make test`.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator

import pytest
import schemathesis
import uvicorn
from fake_workers import start_cluster
from hypothesis import HealthCheck, given, settings
from prometheus_client import CollectorRegistry
from test_dispatch_failures import wait_for

from prfaas.metrics import RouterMetrics
from prfaas.router.http_api import create_app
from prfaas.tokenizer.byte_level import BytePromptTokenizer

EXAMPLES_PER_OPERATION = 50  # per generation mode
# A small context keeps generated requests without max_tokens (chat) to a few hundred tokens.
MAX_CONTEXT = 512


@pytest.fixture(scope="module")
def router_url() -> Iterator[str]:
    """The router's HTTP address; the fake cluster and uvicorn live on one background loop."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="router-under-test", daemon=True)
    thread.start()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))

    async def up() -> tuple[object, uvicorn.Server, asyncio.Task[None]]:
        cluster = await start_cluster(threshold=64, max_context=MAX_CONTEXT)
        metrics = RouterMetrics(CollectorRegistry(), "fake")
        cluster.dispatcher.metrics = metrics
        app = create_app(cluster.dispatcher, BytePromptTokenizer(), metrics=metrics)
        config = uvicorn.Config(app, log_level="warning", lifespan="off")
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve(sockets=[sock]))
        await wait_for(lambda: server.started)
        return cluster, server, task

    cluster, server, task = asyncio.run_coroutine_threadsafe(up(), loop).result(60)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:

        async def down() -> None:
            server.should_exit = True
            await task
            await cluster.close()  # type: ignore[attr-defined]

        asyncio.run_coroutine_threadsafe(down(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        sock.close()


def test_no_generated_request_gets_a_server_error(router_url: str) -> None:
    schema = schemathesis.openapi.from_url(f"{router_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    labels = {op.label for op in operations}
    assert {"POST /v1/completions", "POST /v1/chat/completions"} <= labels

    # Positive cases fit the schema (they must be served or refused with a 4xx); negative ones
    # break it on purpose (out-of-range integers, wrong types: always a 4xx). Operations without
    # a body or parameters (GET /health, ...) have no negative cases.
    positive = schemathesis.GenerationMode.POSITIVE
    negative = schemathesis.GenerationMode.NEGATIVE
    runs = [(positive, op) for op in operations]
    runs += [(negative, op) for op in operations if op.method.upper() == "POST"]
    for mode, operation in runs:

        @given(case=operation.as_strategy(mode))
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,  # replay nothing from earlier runs: the test is bounded and the same
            suppress_health_check=list(HealthCheck),
        )
        def no_server_error(case: schemathesis.Case) -> None:
            case.call_and_validate(
                base_url=router_url,
                checks=[schemathesis.checks.not_a_server_error],
                timeout=30,
            )

        no_server_error()
