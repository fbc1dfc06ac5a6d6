"""Issue 4 acceptance across real processes: the same greedy tokens on every path, no leaks.

Paths: the in-process reference engine; a `mixed` PD worker; PrfaaS prefill worker -> TCP ->
`decode` PD worker; `prefill` PD worker -> `decode` PD worker; and a second pass that hits the
prefill workers' prefix caches. Workers run the `tiny` model (same seeded weights everywhere).
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import grpc
import pytest

from prfaas._proto.prfaas.v1 import common_pb2, worker_pb2, worker_pb2_grpc
from prfaas.engine.backend_torch import TorchBackend
from prfaas.engine.core import EngineCore, generate
from prfaas.model.config import get_preset
from prfaas.model.hybrid import HybridModel
from prfaas.sampling import SamplingParams
from tests.e2e.processes import (
    generate_local,
    generate_remote,
    start_worker,
    supervisor,
    wait_leak_free,
)

COMMON = ["--preset", "tiny", "--block-size", "64", "--cache-budget-mb", "64", "--threads", "1"]
NUM_TOKENS = 6


def prompts() -> list[list[int]]:
    """20 prompts of varied lengths; groups share long prefixes (exercising the prefix caches)."""
    rng = random.Random(7)
    shared = [rng.randrange(256) for _ in range(400)]
    out = []
    for i in range(20):
        if i % 2 == 0:
            out.append(
                shared[: 64 * (1 + i % 5)]
                + [rng.randrange(256) for _ in range(rng.randrange(1, 90))]
            )
        else:
            out.append([rng.randrange(256) for _ in range(rng.choice([1, 3, 63, 65, 129, 300]))])
    return out


def reference_tokens(all_prompts: list[list[int]]) -> list[list[int]]:
    engine = EngineCore(
        TorchBackend(HybridModel(get_preset("tiny")), block_size=64), cache_budget_bytes=64 << 20
    )
    params = SamplingParams(temperature=0.0, max_tokens=NUM_TOKENS, ignore_eos=True)
    # One prompt at a time: batch composition can flip near-tied argmaxes (hybrid_model.md §5).
    return [
        generate(engine, [p], params, id_prefix=f"ref{i}")[0] for i, p in enumerate(all_prompts)
    ]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    sup = supervisor(Path(tmp_path_factory.mktemp("workers")))
    try:
        procs = {
            "prfaas": start_worker(sup, "prefill", "prfaas-0", COMMON),
            "mixed": start_worker(sup, "pd", "pd-mixed", COMMON, role="mixed"),
            "pdp": start_worker(sup, "pd", "pd-p", COMMON, role="prefill"),
            "pdd": start_worker(sup, "pd", "pd-d", COMMON, role="decode"),
        }
        yield procs
    finally:
        sup.stop_all()


async def run_paths(cluster: dict, all_prompts: list[list[int]]) -> dict[str, list[list[int]]]:
    chans = {k: grpc.aio.insecure_channel(v.grpc_address) for k, v in cluster.items()}
    try:
        mixed = worker_pb2_grpc.WorkerStub(chans["mixed"])
        prfaas = worker_pb2_grpc.WorkerStub(chans["prfaas"])
        pdp = worker_pb2_grpc.WorkerStub(chans["pdp"])
        pdd = worker_pb2_grpc.WorkerStub(chans["pdd"])
        kv = cluster["pdd"].kv_port
        out: dict[str, list[list[int]]] = {
            k: [] for k in ("mixed", "prfaas", "pdp", "prfaas_hit", "pdp_hit")
        }
        cached = {"prfaas_hit": 0, "pdp_hit": 0}
        for p in all_prompts:
            out["mixed"].append((await generate_local(mixed, p, NUM_TOKENS))[0])
            out["prfaas"].append(
                (await generate_remote(pdd, prfaas, "prfaas-0", kv, p, NUM_TOKENS))[0]
            )
            out["pdp"].append((await generate_remote(pdd, pdp, "pd-p", kv, p, NUM_TOKENS))[0])
        for p in all_prompts:
            tokens, result = await generate_remote(pdd, prfaas, "prfaas-0", kv, p, NUM_TOKENS)
            out["prfaas_hit"].append(tokens)
            cached["prfaas_hit"] += result.num_cached_tokens
            tokens, result = await generate_remote(pdd, pdp, "pd-p", kv, p, NUM_TOKENS)
            out["pdp_hit"].append(tokens)
            cached["pdp_hit"] += result.num_cached_tokens
        out["_cached"] = [[cached["prfaas_hit"], cached["pdp_hit"]]]
        return out
    finally:
        for ch in chans.values():
            await ch.close()


def test_greedy_tokens_identical_on_every_path(cluster: dict) -> None:
    all_prompts = prompts()
    expected = reference_tokens(all_prompts)
    got = asyncio.run(run_paths(cluster, all_prompts))
    cached_prfaas, cached_pdp = got.pop("_cached")[0]
    for path, tokens in got.items():
        mismatches = [i for i, (a, b) in enumerate(zip(expected, tokens, strict=True)) if a != b]
        assert not mismatches, f"path {path}: prompts {mismatches} differ from the reference"
    # The second pass really came from the prefix caches (full 64-token blocks of each prompt).
    assert cached_prfaas > 0 and cached_pdp > 0


def test_no_leaks_after_paths(cluster: dict) -> None:
    asyncio.run(run_paths(cluster, prompts()[:4]))
    for proc in cluster.values():
        load = asyncio.run(wait_leak_free(proc))
        assert load.leak_report == "", f"{proc.worker_id}: {load.leak_report}"
        assert load.num_live_requests == 0 and load.num_open_transfers == 0


async def _abort_during_decode(cluster: dict) -> None:
    async with grpc.aio.insecure_channel(cluster["mixed"].grpc_address) as ch:
        stub = worker_pb2_grpc.WorkerStub(ch)
        req = worker_pb2.GenerateRequest(
            request_id="abort-me",
            prompt_ids=list(range(200)),
            sampling=common_pb2.SamplingParams(max_tokens=2000, ignore_eos=True),
        )
        call = stub.Generate(req, timeout=60)
        seen = 0
        async for ev in call:
            if ev.WhichOneof("event") == "tokens":
                seen += 1
                if seen == 3:
                    found = await stub.Abort(worker_pb2.AbortRequest(request_id="abort-me"))
                    assert found.found
                    break
        call.cancel()


def test_abort_during_decode_frees_everything(cluster: dict) -> None:
    asyncio.run(_abort_during_decode(cluster))
    load = asyncio.run(wait_leak_free(cluster["mixed"]))
    assert load.leak_report == ""


async def _prefill_to_dead_destination(cluster: dict) -> str:
    from tests.e2e.processes import free_port

    async with grpc.aio.insecure_channel(cluster["prfaas"].grpc_address) as ch:
        stub = worker_pb2_grpc.WorkerStub(ch)
        dest = worker_pb2.KvDestination(host="127.0.0.1", port=free_port(), transfer_id="nobody")
        try:
            await stub.Prefill(
                worker_pb2.PrefillRequest(
                    request_id="dead-dest", prompt_ids=list(range(150)), destination=dest
                ),
                timeout=60,
            )
        except grpc.aio.AioRpcError as exc:
            return exc.details() or ""
    return "no error"


def test_prefill_to_dead_receiver_fails_fast_and_frees(cluster: dict) -> None:
    details = asyncio.run(_prefill_to_dead_destination(cluster))
    assert "kv_transfer_failed" in details
    load = asyncio.run(wait_leak_free(cluster["prfaas"]))
    assert load.leak_report == ""
