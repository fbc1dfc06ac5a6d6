"""`prfaas bench model`: prefill and decode throughput of the hybrid model (a preset, or a Hugging
Face Qwen3.5 checkpoint directory with `--model DIR`, e.g. one from scripts/make_random_qwen35.py
with the real 0.8B layer shapes and few layers). Prefill as a fraction of
the FLOP/s a plain torch matmul of the model's dominant shapes reaches in the same run; decode as a
fraction of the read bandwidth (a torch sum over 256 MiB) measured in the same run, from the bytes
a step must read (weights, each request's KV and linear state; `decode_bytes`).

FLOPs are counted analytically (multiply-add = 2): weight matmuls 2·params per token, causal
attention 4·Hq·head_dim per (query, visible key) pair per full layer, and the chunked GDN's
per-token matmul work with causal C x C products counted at half (docs/hybrid-model.md §4.3). Decode contexts are built by prefilling one request
and copying its KV blocks and state to the others (decode cost does not depend on the content).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import time
from typing import NotRequired, TypedDict

import torch

from prfaas.device import configure_threads, pick_device
from prfaas.model.cache import HybridCache, SeqCache
from prfaas.model.config import DTYPE_BYTES, HybridConfig, get_preset
from prfaas.model.hf_checkpoint import load_hf_model
from prfaas.model.hybrid import HybridModel
from prfaas.model.ops import native
from prfaas.model.ops.native.loader import DISABLE_ENV


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="small", help="tiny | small | large")
    parser.add_argument(
        "--model", default=None, help="a Hugging Face Qwen3.5 checkpoint directory (not a preset)"
    )
    parser.add_argument(
        "--dtype", default=None, help="with --model: bfloat16 | float32 (default: the checkpoint's)"
    )
    parser.add_argument(
        "--prompt-lengths",
        default=None,
        help="comma-separated prefill lengths (default 1024,4096,16384)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default 1)")
    parser.add_argument("--device", default=None, help="cpu | cuda (default: CUDA if available)")
    parser.add_argument("--quick", action="store_true", help="short prompts (smoke test)")
    parser.add_argument(
        "--decode-contexts", default="4096,16384", help="comma-separated decode contexts"
    )
    parser.add_argument(
        "--compare-torch",
        action="store_true",
        help="also time decode with the native CPU kernels off (the torch path), same run",
    )


class MatmulCeiling(TypedDict):
    flops_per_s: float
    shapes_mkn: list[tuple[int, int, int]]


class PrefillRow(TypedDict):
    tokens: int
    seconds: float
    tokens_per_s: float
    flops_per_s: float
    fraction_of_ceiling: NotRequired[float]  # filled in once the run's ceiling is known


class DecodeRow(TypedDict):
    batch: int
    context: int
    step_ms: float
    tokens_per_s: float
    flops_per_s: float
    bytes_read: dict[str, int]  # decode_bytes: weights, kv, state, total
    read_bytes_per_s: float
    step_ms_min_max: list[float]
    # The step's own thread CPU time (CPU device): on a shared box wall time includes waits for a
    # core, CPU time does not; it is compared with the read bandwidth timed the same way.
    step_cpu_ms: float | None
    read_bytes_per_cpu_s: float | None
    # Filled in once the run's ceiling, bandwidth and torch-path timings are known.
    fraction_of_ceiling: NotRequired[float]
    fraction_of_read_bandwidth: NotRequired[float]
    fraction_of_read_bandwidth_cpu: NotRequired[float]
    speedup_vs_torch_path: NotRequired[float]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _best_time(fn, device: torch.device, repeats: int = 3, clock=time.perf_counter) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        t0 = clock()
        fn()
        _sync(device)
        best = min(best, clock() - t0)
    return best


def _weight_flops_per_token(c: HybridConfig) -> int:
    """2 x matmul weights touched per token (embedding lookup and the one-row head excluded;
    `num_params` counts the [V, d] matrix once when the head is tied to the embedding)."""
    embedding_and_head = (1 if c.tie_embeddings else 2) * c.vocab_size * c.d_model
    return 2 * (c.num_params - embedding_and_head)


def _gdn_flops_per_token(c: HybridConfig) -> int:
    # Per token and head: the causal halves of the C x C products K Kᵀ, Q Kᵀ and (Q Kᵀ ⊙ D) V'
    # (C·(2·d_k + d_v); the kernel computes full squares, but only half is needed), the two
    # triangular solves (C·(d_k + d_v)), and the three d_k x d_v state products per chunk row.
    C, dk, dv = c.chunk_size, c.gdn_head_k_dim, c.gdn_head_v_dim
    per_head = C * (2 * dk + dv) + C * (dk + dv) + 6 * dk * dv
    return per_head * c.gdn_num_v_heads * len(c.linear_layers)


def prefill_flops(c: HybridConfig, T: int) -> float:
    pairs = T * (T + 1) / 2
    attn = 4 * c.n_q_heads * c.head_dim * pairs * len(c.full_layers)
    return T * (_weight_flops_per_token(c) + _gdn_flops_per_token(c)) + attn


def decode_flops(c: HybridConfig, batch: int, context: int) -> float:
    attn = 4 * c.n_q_heads * c.head_dim * (context + 1) * len(c.full_layers)
    gdn = 6 * c.gdn_head_k_dim * c.gdn_head_v_dim * c.gdn_num_v_heads * len(c.linear_layers)
    head = 2 * c.vocab_size * c.d_model
    return batch * (_weight_flops_per_token(c) + attn + gdn + head)


def decode_bytes(c: HybridConfig, batch: int, context: int) -> dict[str, int]:
    """Bytes one decode step must read at least: every matmul weight once (the embedding lookup
    reads B rows; the LM head reads its matrix), each request's KV of `context` + 1 tokens, and
    each request's linear state (recurrent + conv)."""
    dtype_bytes = DTYPE_BYTES[c.dtype]
    weights = (c.num_params - c.vocab_size * c.d_model) * dtype_bytes
    if c.tie_embeddings:  # the head is the embedding: counted once, as the head
        weights += c.vocab_size * c.d_model * dtype_bytes
    kv = batch * (context + 1) * c.kv_bytes_per_token
    state = batch * c.state_bytes_per_request
    return {"weights": weights, "kv": kv, "state": state, "total": weights + kv + state}


def read_bandwidth(
    device: torch.device, nbytes: int = 256 * 2**20, *, clock=time.perf_counter
) -> float:
    """Bytes/s of a plain torch sum over `nbytes` of filled fp32 (far larger than the caches):
    the memory roofline the decode steps are compared with, measured in the same run.
    `clock=time.thread_time` gives the CPU-time figure (see DecodeRow.step_cpu_ms)."""
    x = torch.randn(nbytes // 4, device=device)
    return nbytes / _best_time(lambda: x.sum(), device, repeats=5, clock=clock)


def matmul_ceiling(c: HybridConfig, device: torch.device, rows: int = 4096) -> MatmulCeiling:
    """FLOP/s of plain matmuls with the model's dominant prefill shapes (MLP, GDN/attention
    projections, and an attention score tile), in the model dtype."""
    d, dt = c.d_model, c.torch_dtype
    q_width = c.n_q_heads * c.head_dim * (2 if c.attn_output_gate else 1)
    shapes = [
        (rows, d, 2 * c.ffn_dim),
        (rows, c.ffn_dim, d),
        (rows, d, c.conv_dim),
        (rows, d, q_width),
    ]
    shapes.append((c.n_q_heads * 256, c.head_dim, rows))
    total_flops, total_time = 0.0, 0.0
    for m, k, n in shapes:
        a = torch.randn(m, k, device=device, dtype=dt)
        b = torch.randn(k, n, device=device, dtype=dt)
        seconds = _best_time(lambda a=a, b=b: a @ b, device)
        total_flops += 2 * m * k * n
        total_time += seconds
    return {"flops_per_s": total_flops / total_time, "shapes_mkn": shapes}


def cache_bytes(cache: HybridCache) -> dict[str, float]:
    """KV bytes per token and linear-state bytes per request as the allocated cache tensors hold
    them (kv [blocks, block_size, 2, Hkv, hd] per full layer; recurrent and conv per slot), to set
    beside the figures the model's config reports."""
    kv = sum(t.numel() * t.element_size() for t in cache.kv)
    state = sum(t.numel() * t.element_size() for t in cache.recurrent + cache.conv)
    return {
        "kv_bytes_per_token": kv / (cache.num_blocks * cache.block_size),
        "state_bytes_per_request": state / cache.num_slots,
    }


def _load_model(args: argparse.Namespace, device: torch.device) -> tuple[HybridModel, str]:
    """The preset's model (seeded random weights) or a checkpoint directory's (--model)."""
    if args.model:
        model, info = load_hf_model(args.model, device=device, dtype=args.dtype)
        return model, info.name
    return HybridModel(get_preset(args.preset), device=device), args.preset


def _prefill_case(model: HybridModel, T: int, device: torch.device) -> PrefillRow:
    c = model.config
    cache = HybridCache(c, -(-T // 256), 1, block_size=256, device=device)
    seq = SeqCache(list(range(cache.num_blocks)), 0, 0)
    tokens = torch.randint(0, 256, (T,), generator=torch.Generator().manual_seed(T))
    _sync(device)
    t0 = time.perf_counter()
    model.prefill(tokens, cache, seq)
    _sync(device)
    seconds = time.perf_counter() - t0
    return {
        "tokens": T,
        "seconds": seconds,
        "tokens_per_s": T / seconds,
        "flops_per_s": prefill_flops(c, T) / seconds,
    }


def _decode_cases(
    model: HybridModel, batches: list[int], context: int, steps: int, device: torch.device
) -> list[DecodeRow]:
    c = model.config
    bs = 256
    per_req = -(-(context + steps + 2) // bs)
    B_max = max(batches)
    cache = HybridCache(c, per_req * B_max, B_max, block_size=bs, device=device)
    seqs = [SeqCache(list(range(r * per_req, (r + 1) * per_req)), r, 0) for r in range(B_max)]
    tokens = torch.randint(0, 256, (context,), generator=torch.Generator().manual_seed(0))
    model.prefill(tokens, cache, seqs[0])
    for r in range(1, B_max):
        cache.copy_blocks(seqs[0].block_table, seqs[r].block_table)
        cache.copy_state(0, r)
    out = []
    for B in batches:
        group = seqs[:B]
        step_tokens = torch.full((B,), 65, dtype=torch.long)
        times, cpu_times = [], []
        for i in range(steps + 1):
            for s in group:
                s.num_tokens = context + i
            _sync(device)
            t0, c0 = time.perf_counter(), time.thread_time()
            model.decode(step_tokens, cache, group)
            _sync(device)
            if i:  # the first step is a warm-up
                times.append(time.perf_counter() - t0)
                cpu_times.append(time.thread_time() - c0)
        times.sort()
        cpu_times.sort()
        step, cpu_step = times[len(times) // 2], cpu_times[len(cpu_times) // 2]
        on_cpu = device.type == "cpu"
        need = decode_bytes(c, B, context)
        out.append(DecodeRow({
            "batch": B, "context": context, "step_ms": step * 1e3, "tokens_per_s": B / step,
            "step_ms_min_max": [times[0] * 1e3, times[-1] * 1e3],
            "step_cpu_ms": cpu_step * 1e3 if on_cpu else None,
            "flops_per_s": decode_flops(c, B, context) / step,
            "bytes_read": need, "read_bytes_per_s": need["total"] / step,
            "read_bytes_per_cpu_s": need["total"] / cpu_step if on_cpu and cpu_step else None,
        }))  # fmt: skip
    return out


def _with_native(enabled: bool, fn):
    """fn() with the native decode kernels on or off (PRFAAS_NATIVE_KERNELS), restored after."""
    saved = os.environ.get(DISABLE_ENV)
    os.environ[DISABLE_ENV] = "1" if enabled else "0"
    try:
        return fn()
    finally:
        if saved is None:
            os.environ.pop(DISABLE_ENV)
        else:
            os.environ[DISABLE_ENV] = saved


def run(args: argparse.Namespace) -> int:
    threads = configure_threads(args.threads)
    device = pick_device(args.device)
    model, model_name = _load_model(args, device)
    config = model.config
    measured_sizes = cache_bytes(HybridCache(config, 1, 1, device=device))
    load_start = os.getloadavg()
    prompt_lengths = [256, 1024] if args.quick else [1024, 4096, 16384]
    if args.prompt_lengths:
        prompt_lengths = [int(x) for x in args.prompt_lengths.split(",")]
    contexts = [512] if args.quick else [int(x) for x in args.decode_contexts.split(",")]
    steps = 4 if args.quick else 8
    bandwidth_start = read_bandwidth(device)
    cpu_bandwidth_start = read_bandwidth(device, clock=time.thread_time)
    ceiling = matmul_ceiling(config, device)
    prefill = [_prefill_case(model, T, device) for T in prompt_lengths]
    decode: list[DecodeRow] = []
    decode_torch: list[DecodeRow] = []
    for ctx in contexts:
        decode += _decode_cases(model, [1, 8, 32], ctx, steps, device)
        if args.compare_torch:
            decode_torch += _with_native(
                False, lambda ctx=ctx: _decode_cases(model, [1, 8, 32], ctx, steps, device)
            )
    ceiling_end = matmul_ceiling(config, device)["flops_per_s"]
    bandwidth_end = read_bandwidth(device)
    cpu_bandwidth_end = read_bandwidth(device, clock=time.thread_time)
    peak = max(ceiling["flops_per_s"], ceiling_end)
    bandwidth = max(bandwidth_start, bandwidth_end)
    cpu_bandwidth = max(cpu_bandwidth_start, cpu_bandwidth_end)
    for prow in prefill:
        prow["fraction_of_ceiling"] = prow["flops_per_s"] / peak
    for row in decode + decode_torch:
        row["fraction_of_ceiling"] = row["flops_per_s"] / peak
        row["fraction_of_read_bandwidth"] = row["read_bytes_per_s"] / bandwidth
        per_cpu_s = row["read_bytes_per_cpu_s"]
        if per_cpu_s is not None:
            row["fraction_of_read_bandwidth_cpu"] = per_cpu_s / cpu_bandwidth
    for fast, slow in zip(decode, decode_torch, strict=False):
        fast["speedup_vs_torch_path"] = slow["step_ms"] / fast["step_ms"]
    result = {
        "preset": None if args.model else args.preset,
        "model": model_name,
        "dtype": config.dtype,
        "layer_pattern": config.layer_pattern,
        "device": str(device),
        "threads": threads,
        "torch": torch.__version__,
        "native_decode_kernels": native.usable(torch.zeros(1, device=device)),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "load_average_start_end": [load_start[0], os.getloadavg()[0]],
        "params": config.num_params,
        "kv_bytes_per_token": config.kv_bytes_per_token,
        "state_bytes_per_request": config.state_bytes_per_request,
        "cache_tensor_bytes": measured_sizes,
        "matmul_ceiling_flops_per_s": peak,
        "matmul_ceiling_start_end": [ceiling["flops_per_s"], ceiling_end],
        "ceiling_shapes_mkn": ceiling["shapes_mkn"],
        "read_bandwidth_bytes_per_s": bandwidth,
        "read_bandwidth_start_end": [bandwidth_start, bandwidth_end],
        "read_bandwidth_cpu_time_start_end": [cpu_bandwidth_start, cpu_bandwidth_end],
        "prefill": prefill,
        "decode": decode,
        "decode_torch_path": decode_torch,
    }
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(
            f"{model_name} ({config.dtype}, {config.layer_pattern}) on {device}, {threads} "
            f"thread(s); KV {config.kv_bytes_per_token} B/token, state "
            f"{config.state_bytes_per_request} B/request; ceiling {peak / 1e9:.1f} GFLOP/s, "
            f"read bandwidth {bandwidth / 1e9:.1f} GB/s; load {load_start[0]:.1f}"
        )
        for r in prefill:
            print(
                f"prefill {r['tokens']:>6}: {r['tokens_per_s']:8.0f} tok/s  "
                f"{r['fraction_of_ceiling']:.2f} of ceiling"
            )
        for row in decode:
            print(
                f"decode B={row['batch']:>2} @{row['context']}: {row['step_ms']:7.1f} ms/step  "
                f"{row['tokens_per_s']:7.0f} tok/s  reads {row['bytes_read']['total'] / 1e6:6.1f} "
                f"MB  {row['fraction_of_read_bandwidth']:.2f} of read bandwidth"
                + (
                    f" (CPU time {row['step_cpu_ms']:.1f} ms: "
                    f"{row.get('fraction_of_read_bandwidth_cpu', 0.0):.2f})"
                    if row["step_cpu_ms"] is not None
                    else ""
                )
            )
    return 0
