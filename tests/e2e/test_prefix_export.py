"""Cross-worker prefix export across real processes (issue 4 item 1, last bullet; paper §2.3).

A PrfaaS prefill worker warms a prefix through the offload flow; ExportPrefix ships it to a mixed
PD worker (ImportPrefix), which then serves a request with that prefix from its cache with the
same greedy tokens as computing it; and back, PD -> PrfaaS. Failures leave both sides leak-free.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from pathlib import Path

import grpc
import pytest

from prfaas._proto.prfaas.v1 import worker_pb2, worker_pb2_grpc
from prfaas.engine.backend_torch import TorchBackend
from prfaas.engine.core import EngineCore, generate
from prfaas.model.config import get_preset
from prfaas.model.hybrid import HybridModel
from prfaas.sampling import SamplingParams
from tests.e2e.processes import (
    free_port,
    generate_local,
    generate_remote,
    start_worker,
    supervisor,
    wait_leak_free,
)

BLOCK = 64
COMMON = ["--preset", "tiny", "--block-size", str(BLOCK), "--cache-budget-mb", "64"]
COMMON += ["--threads", "1"]
N = 5
_rng = random.Random(11)
PROMPT = [_rng.randrange(256) for _ in range(230)]  # warms 3 full blocks on the PrfaaS worker
PREFIX = PROMPT[: 3 * BLOCK]
QUERY = PREFIX + [_rng.randrange(256) for _ in range(90)]  # 282 tokens: 4 full blocks


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    sup = supervisor(Path(tmp_path_factory.mktemp("workers")))
    try:
        kv_a = free_port()
        a = start_worker(sup, "prefill", "pf-a", [*COMMON, "--kv-port", str(kv_a)])
        a.kv_port = kv_a
        yield {"a": a, "b": start_worker(sup, "pd", "pd-b", COMMON, role="mixed")}
    finally:
        sup.stop_all()


def reference(prompt: list[int]) -> list[int]:
    engine = EngineCore(
        TorchBackend(HybridModel(get_preset("tiny")), block_size=BLOCK), cache_budget_bytes=64 << 20
    )
    params = SamplingParams(temperature=0.0, max_tokens=N, ignore_eos=True)
    return generate(engine, [prompt], params)[0]


async def move_prefix(
    target, holder, holder_id: str, kv_port: int, tokens: list[int], **kw: object
) -> tuple[worker_pb2.ImportPrefixEvent, object]:  # noqa: ANN001
    """ImportPrefix on `target`, then ExportPrefix on `holder`: (last import event, export
    result or the RpcError)."""
    tid = uuid.uuid4().hex
    call = target.ImportPrefix(
        worker_pb2.ImportPrefixRequest(
            import_id=uuid.uuid4().hex, token_ids=tokens, block_size=kw.get("target_bs", BLOCK),
            transfer_id=tid, sender_id=holder_id, deadline_seconds=kw.get("deadline", 30.0),
        ), timeout=60,
    )  # fmt: skip
    events = call.__aiter__()
    first = await events.__anext__()
    if first.WhichOneof("event") != "admitted":
        return first, None
    dest = worker_pb2.KvDestination(host="127.0.0.1", port=kv_port, transfer_id=tid)
    try:
        result: object = await holder.ExportPrefix(
            worker_pb2.ExportPrefixRequest(
                export_id=uuid.uuid4().hex, token_ids=kw.get("export_tokens", tokens),
                block_size=BLOCK, destination=dest, deadline_seconds=30.0,
            ), timeout=60,
        )  # fmt: skip
    except grpc.aio.AioRpcError as exc:
        result = exc
    return await events.__anext__(), result


async def scenario(workers: dict) -> dict[str, object]:
    a, b = workers["a"], workers["b"]
    out: dict[str, object] = {}
    async with (
        grpc.aio.insecure_channel(a.grpc_address) as ca,
        grpc.aio.insecure_channel(b.grpc_address) as cb,
    ):
        pf, pd = worker_pb2_grpc.WorkerStub(ca), worker_pb2_grpc.WorkerStub(cb)
        await generate_remote(pd, pf, "pf-a", b.kv_port, PROMPT, N)  # warm A via the offload flow
        out["a_to_b"] = await move_prefix(pd, pf, "pf-a", b.kv_port, PREFIX)
        out["query_on_b"] = await generate_local(pd, QUERY, N)
        # Back: B now caches QUERY's 4th block, which A never saw.
        out["b_to_a"] = await move_prefix(pf, pd, "pd-b", a.kv_port, QUERY[: 4 * BLOCK])
        _, result = await generate_remote(pd, pf, "pf-a", b.kv_port, QUERY, N)
        out["a_cached"] = result.num_cached_tokens
        unknown = [t ^ 1 for t in PREFIX]
        out["unknown"] = await move_prefix(pd, pf, "pf-a", b.kv_port, unknown, deadline=3.0)
        out["dead_dest"] = await move_prefix(pd, pf, "pf-a", free_port(), PREFIX, deadline=3.0)
        out["bad_bs"] = await move_prefix(pd, pf, "pf-a", b.kv_port, PREFIX, target_bs=32)
        # The holder exports another prefix than the target expects: the trailer check fails.
        out["mismatch"] = await move_prefix(
            pd, pf, "pf-a", b.kv_port, unknown, export_tokens=PREFIX, deadline=10.0
        )
    return out


def test_prefix_export_import_reuse_and_failures(workers: dict) -> None:
    out = asyncio.run(scenario(workers))
    event, result = out["a_to_b"]  # type: ignore[misc]
    assert event.WhichOneof("event") == "done", event
    assert event.done.num_tokens == len(PREFIX) and result.num_tokens == len(PREFIX)
    assert result.bytes_sent == event.done.bytes_received > 0
    tokens, cached = out["query_on_b"]  # type: ignore[misc]
    assert cached >= len(PREFIX)
    assert tokens == reference(QUERY)
    event, _ = out["b_to_a"]  # type: ignore[misc]
    assert event.WhichOneof("event") == "done", event
    assert out["a_cached"] >= 4 * BLOCK
    event, exc = out["unknown"]  # type: ignore[misc]
    assert event.WhichOneof("event") == "error" and isinstance(exc, grpc.aio.AioRpcError)
    assert exc.code() == grpc.StatusCode.FAILED_PRECONDITION
    event, exc = out["dead_dest"]  # type: ignore[misc]
    assert event.WhichOneof("event") == "error"  # B's deadline passed: nobody sent
    assert isinstance(exc, grpc.aio.AioRpcError) and "kv_transfer_failed" in (exc.details() or "")
    event, _ = out["bad_bs"]  # type: ignore[misc]
    assert event.error.code == "invalid_argument"
    event, _ = out["mismatch"]  # type: ignore[misc]
    assert event.WhichOneof("event") == "error"
    for proc in workers.values():
        load = asyncio.run(wait_leak_free(proc))
        assert load.leak_report == "", f"{proc.worker_id}: {load.leak_report}"
        assert load.num_live_requests == 0 and load.num_open_transfers == 0


async def _cancel_import(workers: dict) -> None:
    async with grpc.aio.insecure_channel(workers["b"].grpc_address) as cb:
        pd = worker_pb2_grpc.WorkerStub(cb)
        call = pd.ImportPrefix(
            worker_pb2.ImportPrefixRequest(
                import_id="cancel-me", token_ids=PREFIX, block_size=BLOCK, transfer_id="t-c",
                sender_id="nobody", deadline_seconds=30.0,
            )
        )  # fmt: skip
        first = await call.read()
        assert first.WhichOneof("event") == "admitted"
        call.cancel()


def test_cancelled_import_frees_everything(workers: dict) -> None:
    asyncio.run(_cancel_import(workers))
    load = asyncio.run(wait_leak_free(workers["b"]))
    assert load.leak_report == ""
