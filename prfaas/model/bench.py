"""`prfaas bench model`: prefill and decode throughput of the hybrid model, as fractions of the
FLOP/s a plain torch matmul of the model's dominant shapes reaches in the same run.

FLOPs are counted analytically (multiply-add = 2): weight matmuls 2·params per token, causal
attention 4·Hq·head_dim per (query, visible key) pair per full layer, and the chunked GDN's
per-token matmul work with causal C x C products counted at half (docs/hybrid-model.md §4.3). Decode contexts are built by prefilling one request
and copying its KV blocks and state to the others (decode cost does not depend on the content).
"""

from __future__ import annotations

import argparse
import datetime
import json
import time

import torch

from prfaas.model.cache import HybridCache, SeqCache
from prfaas.model.config import HybridConfig, get_preset
from prfaas.model.hybrid import HybridModel
from prfaas.runtime import configure_threads, pick_device


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="small", help="tiny | small | large")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default 1)")
    parser.add_argument("--device", default=None, help="cpu | cuda (default: CUDA if available)")
    parser.add_argument("--quick", action="store_true", help="short prompts (smoke test)")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _best_time(fn, device: torch.device, repeats: int = 3) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


def _weight_flops_per_token(c: HybridConfig) -> int:
    """2 x matmul weights touched per token (embedding lookup and the one-row head excluded)."""
    return 2 * (c.num_params - 2 * c.vocab_size * c.d_model)


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


def matmul_ceiling(c: HybridConfig, device: torch.device, rows: int = 4096) -> dict[str, object]:
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


def _prefill_case(model: HybridModel, T: int, device: torch.device) -> dict[str, float]:
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
) -> list[dict[str, float]]:
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
        times = []
        for i in range(steps + 1):
            for s in group:
                s.num_tokens = context + i
            _sync(device)
            t0 = time.perf_counter()
            model.decode(step_tokens, cache, group)
            _sync(device)
            if i:  # the first step is a warm-up
                times.append(time.perf_counter() - t0)
        step = sorted(times)[len(times) // 2]
        out.append({
            "batch": B, "context": context, "step_ms": step * 1e3, "tokens_per_s": B / step,
            "flops_per_s": decode_flops(c, B, context) / step,
        })  # fmt: skip
    return out


def run(args: argparse.Namespace) -> int:
    threads = configure_threads(args.threads)
    device = pick_device(args.device)
    config = get_preset(args.preset)
    model = HybridModel(config, device=device)
    prompt_lengths = [256, 1024] if args.quick else [1024, 4096, 16384]
    context = 512 if args.quick else 4096
    ceiling = matmul_ceiling(config, device)
    prefill = [_prefill_case(model, T, device) for T in prompt_lengths]
    decode = _decode_cases(model, [1, 8, 32], context, 4 if args.quick else 8, device)
    ceiling_end = matmul_ceiling(config, device)["flops_per_s"]
    peak = max(ceiling["flops_per_s"], ceiling_end)
    for row in prefill + decode:
        row["fraction_of_ceiling"] = row["flops_per_s"] / peak
    result = {
        "preset": args.preset,
        "device": str(device),
        "threads": threads,
        "torch": torch.__version__,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "params": config.num_params,
        "kv_bytes_per_token": config.kv_bytes_per_token,
        "state_bytes_per_request": config.state_bytes_per_request,
        "matmul_ceiling_flops_per_s": peak,
        "matmul_ceiling_start_end": [ceiling["flops_per_s"], ceiling_end],
        "ceiling_shapes_mkn": ceiling["shapes_mkn"],
        "prefill": prefill,
        "decode": decode,
    }
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(f"{args.preset} on {device}, {threads} thread(s); ceiling {peak / 1e9:.1f} GFLOP/s")
        for r in prefill:
            print(
                f"prefill {r['tokens']:>6}: {r['tokens_per_s']:8.0f} tok/s  {r['fraction_of_ceiling']:.2f} of ceiling"
            )
        for r in decode:
            print(
                f"decode B={r['batch']:>2} @{r['context']}: {r['step_ms']:7.1f} ms/step  {r['tokens_per_s']:7.0f} tok/s"
            )
    return 0
