"""The CUDA paths, proven where a GPU exists (`gpu` marker: skipped without CUDA, see
tests/conftest.py; scripts/gpu_check.sh runs them): the model's CUDA prefill/decode against the CPU
oracles, a KV transfer out of device memory through pinned host buffers, and a worker serving a
request on CUDA with the tokens of an in-process CUDA engine."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import threading
from pathlib import Path

import grpc
import pytest
import torch

from prfaas._proto.prfaas.v1 import worker_pb2_grpc
from prfaas.engine.backend_torch import TorchBackend
from prfaas.engine.core import EngineCore, generate
from prfaas.model import HybridCache, HybridModel, SeqCache, get_preset
from prfaas.model.layout import install_staged, stage_layer
from prfaas.model.reference import naive_forward
from prfaas.sampling import SamplingParams
from tests.e2e.processes import generate_local, start_worker, supervisor

pytestmark = pytest.mark.gpu


def _prompt(n: int, seed: int) -> torch.Tensor:
    return torch.randint(0, 256, (n,), generator=torch.Generator().manual_seed(seed))


def test_cuda_prefill_and_batched_decode_match_cpu() -> None:
    c = get_preset("tiny")
    cpu, gpu = HybridModel(c), HybridModel(c, device="cuda")
    ok = cpu.logit_mask == 0
    lengths = [130, 7, 64]
    caches = {
        m: HybridCache(c, 12, 3, block_size=64, device=m.device, fill=float("nan"))
        for m in (cpu, gpu)
    }
    seqs = {m: [SeqCache(list(range(4 * r, 4 * r + 4)), r, 0) for r in range(3)] for m in caches}
    for r, n in enumerate(lengths):
        toks = _prompt(n, r)
        want = naive_forward(cpu, toks)[-1]
        got = gpu.prefill(toks, caches[gpu], seqs[gpu][r]).cpu()
        cpu.prefill(toks, caches[cpu], seqs[cpu][r])
        torch.testing.assert_close(got[ok], want[ok], atol=1e-3, rtol=1e-3)
        for m in caches:
            seqs[m][r].num_tokens = n
    for step in range(4):
        toks = torch.tensor([65 + step, 66, 67])
        got = gpu.decode(toks, caches[gpu], seqs[gpu]).cpu()
        want = cpu.decode(toks, caches[cpu], seqs[cpu])
        torch.testing.assert_close(got[:, ok], want[:, ok], atol=1e-3, rtol=1e-3)
        for m in caches:
            for s in seqs[m]:
                s.num_tokens += 1


def test_bf16_cuda_prefill_close_to_fp32_oracle() -> None:
    c = dataclasses.replace(get_preset("tiny"), dtype="bfloat16")
    gpu = HybridModel(c, device="cuda")
    cpu32 = HybridModel(get_preset("tiny"))
    cache = HybridCache(c, 4, 1, block_size=64, device="cuda")
    toks = _prompt(200, 3)
    got = gpu.prefill(toks, cache, SeqCache([0, 1, 2, 3], 0, 0)).float().cpu()
    want = naive_forward(cpu32, toks)[-1]
    ok = cpu32.logit_mask == 0
    assert float((got[ok] - want[ok]).abs().max()) < 0.25  # bf16 weights and KV


def _send_all(sock: socket.socket, buffers: list[torch.Tensor]) -> None:
    for b in buffers:
        sock.sendall(memoryview(b.numpy()))
    sock.close()


def test_kv_out_of_device_memory_through_pinned_host_buffers() -> None:
    """Sender stages each layer from its CUDA cache into pinned host memory and writes it to a
    socket; the receiver reads into pinned buffers and installs them into a second CUDA cache;
    decoding on the copy gives the sender's logits."""
    c = get_preset("tiny")
    model = HybridModel(c, device="cuda")
    src = HybridCache(c, 4, 1, block_size=64, device="cuda")
    dst = HybridCache(c, 8, 2, block_size=64, device="cuda", fill=float("nan"))
    s_seq, d_seq = SeqCache([0, 1, 2, 3], 0, 0), SeqCache([7, 5, 6, 4], 1, 0)
    n = 150
    model.prefill(_prompt(n, 9), src, s_seq)
    s_seq.num_tokens = d_seq.num_tokens = n
    staged = [stage_layer(src, layer, s_seq) for layer in range(c.num_layers)]
    assert all(b.is_pinned() for b in staged)
    a, b = socket.socketpair()
    sender = threading.Thread(target=_send_all, args=(a, staged))
    sender.start()
    for layer, sent in enumerate(staged):
        buf = torch.empty(sent.numel(), dtype=torch.uint8, pin_memory=True)
        view, got = memoryview(buf.numpy()), 0
        while got < len(view):
            got += b.recv_into(view[got:])
        install_staged(dst, layer, d_seq, buf)
    sender.join()
    b.close()
    tok = torch.tensor([42])
    want = model.decode(tok, src, [s_seq])
    got = model.decode(tok, dst, [d_seq])
    assert torch.equal(got, want)


def test_worker_serves_a_request_on_cuda(tmp_path: Path) -> None:
    prompt = _prompt(100, 5).tolist()
    engine = EngineCore(
        TorchBackend(HybridModel(get_preset("tiny"), device="cuda"), block_size=64),
        cache_budget_bytes=64 << 20,
    )
    params = SamplingParams(temperature=0.0, max_tokens=8, ignore_eos=True)
    want = generate(engine, [prompt], params, id_prefix="cuda-ref")[0]
    sup = supervisor(tmp_path)
    try:
        args = ["--preset", "tiny", "--block-size", "64", "--cache-budget-mb", "64"]
        proc = start_worker(sup, "pd", "pd-cuda", [*args, "--device", "cuda"], role="mixed")

        async def ask() -> list[int]:
            async with grpc.aio.insecure_channel(proc.grpc_address) as ch:
                return (await generate_local(worker_pb2_grpc.WorkerStub(ch), prompt, 8))[0]

        assert asyncio.run(ask()) == want
    finally:
        sup.stop_all()
