"""KV compression across real worker processes: a PrfaaS prefill worker and a decode PD worker
started with --kv-compression fp8 serve offloaded requests (gRPC Prefill -> TCP KV -> decode); a
decode worker without the option refuses the same stream with a reason naming the encoding."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import grpc
import pytest

from prfaas._proto.prfaas.v1 import worker_pb2_grpc
from prfaas.engine.backend_torch import TorchBackend
from prfaas.engine.core import EngineCore, generate
from prfaas.model.config import get_preset
from prfaas.model.hybrid import HybridModel
from prfaas.sampling import SamplingParams
from tests.e2e.processes import generate_remote, start_worker, supervisor

COMMON = ["--preset", "tiny", "--block-size", "64", "--cache-budget-mb", "64", "--threads", "1"]
FP8 = [*COMMON, "--kv-compression", "fp8"]
NUM_TOKENS = 6


def prompts() -> list[list[int]]:
    rng = random.Random(5)
    return [[rng.randrange(256) for _ in range(rng.choice([30, 64, 130, 250]))] for _ in range(6)]


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    sup = supervisor(Path(tmp_path_factory.mktemp("workers")))
    try:
        yield {
            "prefill": start_worker(sup, "prefill", "prfaas-0", FP8),
            "decode": start_worker(sup, "pd", "pd-d", FP8, role="decode"),
            "plain": start_worker(sup, "pd", "pd-plain", COMMON, role="decode"),
        }
    finally:
        sup.stop_all()


async def _offload(workers: dict, decoder: str, all_prompts: list[list[int]]) -> list:
    async with (
        grpc.aio.insecure_channel(workers["prefill"].grpc_address) as pch,
        grpc.aio.insecure_channel(workers[decoder].grpc_address) as dch,
    ):
        prefill = worker_pb2_grpc.WorkerStub(pch)
        decode = worker_pb2_grpc.WorkerStub(dch)
        kv = workers[decoder].kv_port
        return [
            await generate_remote(decode, prefill, "prfaas-0", kv, p, NUM_TOKENS)
            for p in all_prompts
        ]


def test_fp8_workers_serve_offloaded_requests(workers: dict) -> None:
    all_prompts = prompts()
    engine = EngineCore(
        TorchBackend(HybridModel(get_preset("tiny")), block_size=64), cache_budget_bytes=64 << 20
    )
    params = SamplingParams(temperature=0.0, max_tokens=NUM_TOKENS, ignore_eos=True)
    expected = [
        generate(engine, [p], params, id_prefix=f"r{i}")[0] for i, p in enumerate(all_prompts)
    ]
    results = asyncio.run(_offload(workers, "decode", all_prompts))
    config = get_preset("tiny")
    same = total = 0
    for prompt, ref, (tokens, result) in zip(all_prompts, expected, results, strict=True):
        assert len(tokens) == NUM_TOKENS and tokens[0] == ref[0]
        same += sum(a == b for a, b in zip(ref, tokens, strict=True))
        total += NUM_TOKENS
        # The bytes the prefill worker reports are the encoded KV (68 per 256 fp32 bytes) + states.
        kv = len(prompt) * config.kv_bytes_per_token
        states = config.state_bytes_per_request
        assert result.bytes_sent == kv * 68 // 256 + states
    assert same / total >= 0.8, (same, total)


def test_a_decoder_without_compression_refuses_the_stream(workers: dict) -> None:
    with pytest.raises(RuntimeError, match=r"kv_transfer_failed.*kvq1:fp8:g64:float32"):
        asyncio.run(_offload(workers, "plain", prompts()[:1]))
