"""Issue 4 acceptance: abort or client cancel at any stage frees everything on both sides.

Stages of the two-worker (offload) flow: waiting for KV on the decode side before the prefill
starts; during the prefill (KV streaming); during decode. After each, both workers report an
empty leak report (no live requests, blocks, state slots, open transfers or pinned buffers).
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import grpc
import pytest

from prfaas._proto.prfaas.v1 import common_pb2, worker_pb2, worker_pb2_grpc
from tests.e2e.processes import start_worker, supervisor, wait_leak_free

# The small model: an 8K-token prefill takes seconds on a CPU core, so an abort lands mid-prefill.
COMMON = ["--preset", "small", "--block-size", "256", "--cache-budget-mb", "128", "--threads", "1"]
LONG_PROMPT = [i % 256 for i in range(8000)]


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    sup = supervisor(Path(tmp_path_factory.mktemp("abort")))
    try:
        extra = [*COMMON, "--max-batched-tokens", "512"]
        yield (
            start_worker(sup, "prefill", "prfaas-0", extra),
            start_worker(sup, "pd", "pd-d", extra, role="decode"),
        )
    finally:
        sup.stop_all()


async def _run_and_abort(pair, stage: str) -> None:  # noqa: ANN001
    prefill_proc, decode_proc = pair
    async with (
        grpc.aio.insecure_channel(prefill_proc.grpc_address) as pch,
        grpc.aio.insecure_channel(decode_proc.grpc_address) as dch,
    ):
        prefill = worker_pb2_grpc.WorkerStub(pch)
        decode = worker_pb2_grpc.WorkerStub(dch)
        rid, tid = f"abort-{stage}", uuid.uuid4().hex
        sampling = common_pb2.SamplingParams(
            max_tokens=1000 if stage == "decoding" else 4, ignore_eos=True
        )
        source = worker_pb2.KvSource(transfer_id=tid, sender_id="prfaas-0", deadline_seconds=60)
        call = decode.Generate(
            worker_pb2.GenerateRequest(
                request_id=rid, prompt_ids=LONG_PROMPT, sampling=sampling, kv_source=source
            )
        )
        events = call.__aiter__()
        assert (await events.__anext__()).WhichOneof("event") == "admitted"
        if stage == "waiting_for_kv":
            call.cancel()
            return
        dest = worker_pb2.KvDestination(host="127.0.0.1", port=decode_proc.kv_port, transfer_id=tid)
        pcall = prefill.Prefill(
            worker_pb2.PrefillRequest(
                request_id=rid, prompt_ids=LONG_PROMPT, sampling=sampling, destination=dest
            )
        )
        if stage == "prefilling":
            # Let the prefill start computing and streaming, then abort it on the prefill side.
            await asyncio.sleep(0.5)
            await prefill.Abort(worker_pb2.AbortRequest(request_id=rid))
            with pytest.raises(grpc.aio.AioRpcError):
                await pcall
            # The decode side learns of the failed transfer and ends its stream with an error.
            async for ev in events:
                if ev.WhichOneof("event") == "error":
                    break
            return
        await pcall
        async for ev in events:
            if ev.WhichOneof("event") == "tokens":
                # Decoding: the client goes away.
                call.cancel()
                return


@pytest.mark.parametrize("stage", ["waiting_for_kv", "prefilling", "decoding"])
def test_abort_frees_both_sides(pair, stage: str) -> None:  # noqa: ANN001
    asyncio.run(_run_and_abort(pair, stage))
    for proc in pair:
        load = asyncio.run(wait_leak_free(proc))
        assert load.leak_report == "", (
            f"{proc.worker_id} after abort while {stage}: {load.leak_report}"
        )
        assert load.num_live_requests == 0 and load.num_open_transfers == 0
