"""A Qwen3.5 checkpoint directory (`--model DIR`, built offline with transformers) served by real
worker processes: the same greedy tokens on the five paths of test_worker_paths (local mixed,
PrfaaS prefill -> TCP -> PD decode, PD prefill -> PD decode, and both again as prefix-cache hits)
and after a cross-cluster prefix move (PrfaaS worker ExportPrefix -> PD worker ImportPrefix), all
equal to an in-process engine over the same checkpoint. Run in fp32 (bit-identical paths).
"""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path

import grpc
import pytest

pytest.importorskip("transformers")

from prfaas._proto.prfaas.v1 import worker_pb2_grpc  # noqa: E402
from prfaas.engine.backend_torch import TorchBackend  # noqa: E402
from prfaas.engine.core import EngineCore, generate  # noqa: E402
from prfaas.model.hf_checkpoint import load_hf_model  # noqa: E402
from prfaas.model.sampler import SamplingParams  # noqa: E402
from tests.e2e.processes import (  # noqa: E402
    generate_local,
    generate_remote,
    start_worker,
    supervisor,
    wait_leak_free,
)
from tests.e2e.test_prefix_export import move_prefix  # noqa: E402
from tests.e2e.test_worker_paths import NUM_TOKENS, prompts, run_paths  # noqa: E402
from tests.model.hf_fixtures import make_checkpoint  # noqa: E402

BLOCK = 64
_rng = random.Random(23)
MOVED = [_rng.randrange(300) for _ in range(3 * BLOCK + 40)]  # seen only by the PrfaaS worker
QUERY = MOVED[: 3 * BLOCK] + [_rng.randrange(300) for _ in range(50)]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("qwen35"), seed=4, max_shard_size="200KB")


@pytest.fixture(scope="module")
def cluster(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    common = ["--model", str(checkpoint), "--model-dtype", "float32", "--block-size", str(BLOCK)]
    common += ["--cache-budget-mb", "64", "--threads", "1"]
    sup = supervisor(Path(tmp_path_factory.mktemp("workers")))
    try:
        yield {
            "prfaas": start_worker(sup, "prefill", "prfaas-0", common),
            "mixed": start_worker(sup, "pd", "pd-mixed", common, role="mixed"),
            "pdp": start_worker(sup, "pd", "pd-p", common, role="prefill"),
            "pdd": start_worker(sup, "pd", "pd-d", common, role="decode"),
        }
    finally:
        sup.stop_all()


def reference_tokens(checkpoint: Path, all_prompts: list[list[int]]) -> list[list[int]]:
    model, _ = load_hf_model(checkpoint, dtype="float32")
    engine = EngineCore(TorchBackend(model, block_size=BLOCK), cache_budget_bytes=64 << 20)
    params = SamplingParams(temperature=0.0, max_tokens=NUM_TOKENS, ignore_eos=True)
    return [generate(engine, [p], params, id_prefix=f"r{i}")[0] for i, p in enumerate(all_prompts)]


async def moved_prefix_query(cluster: dict) -> tuple[object, list[int], int]:
    pf_proc, pd_proc = cluster["prfaas"], cluster["mixed"]
    async with (
        grpc.aio.insecure_channel(pf_proc.grpc_address) as cpf,
        grpc.aio.insecure_channel(pd_proc.grpc_address) as cpd,
        grpc.aio.insecure_channel(cluster["pdd"].grpc_address) as cdd,
    ):
        pf = worker_pb2_grpc.WorkerStub(cpf)
        pd = worker_pb2_grpc.WorkerStub(cpd)
        pdd = worker_pb2_grpc.WorkerStub(cdd)
        # Warm the PrfaaS worker only (decoded on pd-d), then move the prefix to pd-mixed.
        await generate_remote(pdd, pf, "prfaas-0", cluster["pdd"].kv_port, MOVED, NUM_TOKENS)
        event, _ = await move_prefix(pd, pf, "prfaas-0", pd_proc.kv_port, MOVED[: 3 * BLOCK])
        tokens, cached = await generate_local(pd, QUERY, NUM_TOKENS)
    return event, tokens, cached


def test_greedy_tokens_identical_on_every_path(cluster: dict, checkpoint: Path) -> None:
    all_prompts = prompts()[:10]  # ids < 256, inside the checkpoint's 320-id vocabulary
    expected = reference_tokens(checkpoint, [*all_prompts, QUERY])
    got = asyncio.run(run_paths(cluster, all_prompts))
    cached_prfaas, cached_pdp = got.pop("_cached")[0]
    for path, tokens in got.items():
        bad = [i for i, (a, b) in enumerate(zip(expected, tokens, strict=False)) if a != b]
        assert not bad, f"path {path}: prompts {bad} differ from the reference"
    assert cached_prfaas > 0 and cached_pdp > 0
    event, tokens, cached = asyncio.run(moved_prefix_query(cluster))
    assert event.WhichOneof("event") == "done", event
    assert cached >= 3 * BLOCK, "the query did not hit the imported prefix"
    assert tokens == expected[-1]
    # Not a degenerate oracle: the model's greedy continuations differ between prompts.
    assert len({tuple(t) for t in expected}) > 5
    for proc in cluster.values():
        load = asyncio.run(wait_leak_free(proc))
        assert load.leak_report == "", f"{proc.worker_id}: {load.leak_report}"
        # The router's context limit and model name come from these reports.
        limit = json.loads((checkpoint / "config.json").read_text())["max_position_embeddings"]
        assert (load.max_context, load.model_name) == (limit, checkpoint.name), proc.worker_id
