"""The gRPC Router service, the OpenAI front end over the dispatcher, and the control loops."""

from __future__ import annotations

import asyncio
import socket

import grpc
import openai
import pytest
import uvicorn
from fake_workers import FakePDWorker, KvHub, serve, start_cluster
from prometheus_client import CollectorRegistry
from test_dispatch_failures import wait_for

from prfaas._proto.prfaas.v1 import common_pb2, router_pb2, router_pb2_grpc
from prfaas.metrics import RouterMetrics, TransferMetrics
from prfaas.roles import Role
from prfaas.router.control_loops import ControlLoops
from prfaas.router.http_api import create_app
from prfaas.router.service import RouterService
from prfaas.tokenizer.byte_level import BytePromptTokenizer

VOCAB = 259  # the byte tokenizer's ids: 256 bytes, BOS, EOS, PAD


async def start_router_grpc(c) -> tuple[grpc.aio.Server, router_pb2_grpc.RouterStub]:
    server = grpc.aio.server()
    service = RouterService(c.dispatcher, c.registry, vocab_size=VOCAB)
    router_pb2_grpc.add_RouterServicer_to_server(service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    return server, router_pb2_grpc.RouterStub(channel)


async def test_grpc_generate_streams_decision_then_tokens() -> None:
    c = await start_cluster(threshold=64)
    server, stub = await start_router_grpc(c)
    try:
        req = router_pb2.RouterGenerateRequest(
            request_id="g1", prompt_ids=[i % VOCAB for i in range(300)],
            sampling=common_pb2.SamplingParams(max_tokens=3),
        )  # fmt: skip
        events = [e async for e in stub.Generate(req, timeout=10)]
        kinds = [e.WhichOneof("event") for e in events]
        assert kinds == ["decision", "tokens", "tokens", "tokens", "finished"]
        d = events[0].decision
        assert (d.route, d.reason, d.prefill_worker, d.decode_worker) == (
            "offload",
            "offloaded",
            "prfaas-0",
            "pd-1",
        )
        assert d.threshold_tokens == 64
        assert events[-1].finished.reason == common_pb2.FINISH_REASON_LENGTH
        too_long = router_pb2.RouterGenerateRequest(
            request_id="g2", prompt_ids=[1] * 5000, sampling=common_pb2.SamplingParams(max_tokens=1)
        )
        (err,) = [e async for e in stub.Generate(too_long, timeout=10)]
        assert err.error.code == "context_too_long"
    finally:
        await server.stop(0)
        await c.close()


@pytest.mark.parametrize(
    "prompt, sampling, refused",
    [
        ([1, 70000], {}, "prompt_ids[1] = 70000"),
        ([-3, 1], {}, "prompt_ids[0] = -3"),
        ([], {}, "empty"),
        ([1, 2], {"temperature": float("nan")}, "temperature"),
        ([1, 2], {"temperature": float("inf")}, "temperature"),
        ([1, 2], {"top_p": float("nan")}, "top_p"),
        ([1, 2], {"top_k": -7}, "top_k"),
        ([1, 2], {"max_tokens": -1}, "max_tokens"),
        ([1, 2], {"stop_token_ids": [common_pb2.TokenIds(ids=[VOCAB])]}, "stop_token_ids"),
    ],
    ids=[
        "id-70000",
        "id-minus-3",
        "empty",
        "temp-nan",
        "temp-inf",
        "top_p-nan",
        "top_k",
        "max-tok",
        "stop-id",
    ],
)
async def test_grpc_generate_refuses_invalid_requests_before_any_worker(
    prompt: list[int], sampling: dict, refused: str
) -> None:
    c = await start_cluster(threshold=64)
    server, stub = await start_router_grpc(c)
    try:
        req = router_pb2.RouterGenerateRequest(
            request_id="bad", prompt_ids=prompt, sampling=common_pb2.SamplingParams(**sampling)
        )
        (event,) = [e async for e in stub.Generate(req, timeout=10)]
        assert event.error.code == "invalid_argument"
        assert refused in event.error.message
        workers = [*c.pd, *c.prfaas]
        assert [w.generate_requests + w.prefill_requests for w in workers] == [[]] * len(workers)
    finally:
        await server.stop(0)
        await c.close()


async def test_register_worker_makes_it_routable() -> None:
    c = await start_cluster(pd_roles=("mixed",), num_prfaas=0, policy="homogeneous-pd")
    server, stub = await start_router_grpc(c)
    extra = FakePDWorker("pd-9", "mixed", KvHub(), ["10.0.0.9:7000"])
    try:
        port = await serve(extra)
        resp = await stub.RegisterWorker(router_pb2.RegisterWorkerRequest(
            worker_id="pd-9", kind="pd", cluster="pd", grpc_address=f"127.0.0.1:{port}",
            kv_address="10.0.0.9:7000", role="mixed"), timeout=5)  # fmt: skip
        assert resp.accepted and resp.heartbeat_seconds > 0
        await wait_for(
            lambda: c.registry.get("pd-9") is not None and c.registry.get("pd-9").healthy
        )
        bad = await stub.RegisterWorker(router_pb2.RegisterWorkerRequest(worker_id="x", kind="gpu"))
        assert not bad.accepted
    finally:
        await extra.stop()
        await server.stop(0)
        await c.close()


async def test_openai_client_end_to_end_over_dispatcher() -> None:
    c = await start_cluster(threshold=64)
    c.dispatcher.config = type(c.dispatcher.config)(
        **{**c.dispatcher.config.__dict__, "max_context": 4096}
    )
    metrics = RouterMetrics(CollectorRegistry(), "fake")
    c.dispatcher.metrics = metrics
    app = create_app(c.dispatcher, BytePromptTokenizer(), metrics=metrics)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await wait_for(lambda: server.started)
        client = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x",
                                    max_retries=0, timeout=20)  # fmt: skip
        short = await client.completions.create(model="fake", prompt="hi", max_tokens=4)
        assert short.choices[0].text == "abcd" and short.usage.completion_tokens == 4
        chunks = [ch async for ch in await client.completions.create(
            model="fake", prompt="x" * 200, max_tokens=3, stream=True)]  # fmt: skip
        assert "".join(ch.choices[0].text for ch in chunks if ch.choices) == "abc"
        assert len(c.worker("prfaas-0").prefill_requests) == 1
        counted = metrics.routing_decisions.labels("prfaas", "offload", "offloaded")._value.get()
        assert counted == 1
    finally:
        server.should_exit = True
        await task
        sock.close()
        await c.close()


async def test_control_loops_feed_threshold_and_apply_roles() -> None:
    c = await start_cluster(threshold=64)
    try:
        metrics = RouterMetrics(CollectorRegistry(), "fake")
        tm = TransferMetrics(metrics.registry)
        loops = ControlLoops(c.registry, c.dispatcher.short, 1e6, "prfaas", "pd",
                             metrics=metrics, transfer_metrics=tm)  # fmt: skip
        c.worker("prfaas-0").script.load = {"kv_egress_bytes_per_second": 1e6}
        await c.registry.heartbeat_once(c.registry.get("prfaas-0"))
        # Egress at the full link rate: the EWMA crosses u_high within a few ticks and t rises.
        ticks = [loops.short_tick() for _ in range(6)]
        assert ticks[0].threshold == 64 and ticks[-1].threshold > 64
        assert ticks[-1].bandwidth_scarce
        assert metrics.threshold._value.get() == ticks[-1].threshold
        assert tm.utilization.labels("prfaas-pd")._value.get() > 0.9
        assert loops.instance_counts()[("pd", "prefill")] == 1
        assert await c.registry.set_role("pd-0", Role.DECODE)
        assert c.worker("pd-0").role == "decode" and c.registry.get("pd-0").role is Role.DECODE
    finally:
        await c.close()


async def test_retransmissions_on_the_prfaas_link_raise_the_threshold() -> None:
    """The loss signal: TCP retransmits the PrfaaS workers report push t up even though egress is
    low (congestion seen early, paper §4); a clean link leaves t alone."""
    c = await start_cluster(threshold=64)
    try:
        loops = ControlLoops(c.registry, c.dispatcher.short, 1e9, "prfaas", "pd")
        prfaas, handle = c.worker("prfaas-0"), c.registry.get("prfaas-0")

        async def report(sent: int, retrans: int) -> None:
            prfaas.script.load = {"kv_segments_sent": sent, "kv_segments_retransmitted": retrans}
            await c.registry.heartbeat_once(handle)

        await report(0, 0)
        assert loops.telemetry().loss_rate == 0.0
        await report(10_000, 0)
        assert loops.short_tick().threshold == 64  # clean link: no change
        await report(20_000, 500)
        assert loops.telemetry().loss_rate == 0.05  # 500 of the last 10,000 segments
        for i in range(3, 9):
            await report(i * 10_000, (i - 1) * 500)
            decision = loops.short_tick()
        assert decision.threshold > 64
    finally:
        await c.close()
