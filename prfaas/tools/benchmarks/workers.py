"""`prfaas bench workers`: worker-level timings across real processes (issue 4's acceptance).

Starts a `mixed` PD worker, a PrfaaS prefill worker and a `decode` PD worker (torch backend, one
thread each; optionally a `prfaas link` relay shaping the prefill -> decode KV link) and measures:

1. decode interference: inter-token latency (client-side token arrival times) of N running decode
   streams on the mixed worker, without and then with a concurrent long prompt being prefilled
   in chunks on the same worker; and the long prefill's TTFT alone vs. with the decodes running;
2. remote prefill: the long prompt through prefill worker -> TCP -> decode worker (PrefillResult
   timings) and its TTFT against the same prompt prefilled locally on the mixed worker; the link
   goodput (the same TcpSender shipping the request's layers to a receiver process, capped by the
   relay rate), the time to ship one full-attention layer at it, and exposed / one-layer time.
   A second send of the same prompt (a prefix-cache hit) gives a lower bound on goodput.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from prfaas._proto.prfaas.v1 import worker_pb2_grpc
from prfaas.launcher.supervisor import Supervisor
from prfaas.tools.benchmarks import timed_requests, workers_report
from prfaas.tools.benchmarks.procs import Worker, relay_spec, start_all, worker_spec

PREFILL_ID = "bench-prefill"
STREAM_PROMPT_TOKENS = 64


@dataclass(frozen=True)
class Setup:
    preset: str
    prompt_tokens: int
    streams: int
    max_batched_tokens: int
    block_size: int
    cache_budget_mb: float
    baseline_s: float
    link_mbit: float
    link_delay_ms: float


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--preset", default=None, help="model preset (default small; tiny: --quick)"
    )
    parser.add_argument("--prompt-tokens", type=int, default=None, help="long prompt (16384)")
    parser.add_argument("--streams", type=int, default=None, help="running decode streams (4)")
    parser.add_argument("--max-batched-tokens", type=int, default=None, help="step budget (2048)")
    parser.add_argument("--baseline-s", type=float, default=None, help="ITL window without prefill")
    parser.add_argument("--link-mbit", type=float, default=0.0, help="relay rate cap (0: direct)")
    parser.add_argument("--link-delay-ms", type=float, default=0.0, help="relay one-way delay")
    parser.add_argument("--quick", action="store_true", help="tiny preset, short prompts (smoke)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--log-dir", default="", help="worker logs (default: a temporary dir)")


def _setup(args: argparse.Namespace) -> Setup:
    quick = args.quick

    def pick(value: Any, full: Any, smoke: Any) -> Any:
        return value if value is not None else (smoke if quick else full)

    return Setup(
        preset=pick(args.preset, "small", "tiny"),
        prompt_tokens=pick(args.prompt_tokens, 16384, 1024),
        streams=pick(args.streams, 4, 2),
        max_batched_tokens=pick(args.max_batched_tokens, 2048, 256),
        block_size=64 if quick else 256,
        cache_budget_mb=64.0 if quick else 512.0,
        baseline_s=pick(args.baseline_s, 3.0, 1.0),
        link_mbit=args.link_mbit,
        link_delay_ms=args.link_delay_ms,
    )


def _prompt(seed: int, n: int) -> list[int]:
    rng = random.Random(seed)
    return [rng.randrange(256) for _ in range(n)]


def _load() -> float:
    return round(os.getloadavg()[0], 2)


async def _interference(
    mixed: worker_pb2_grpc.WorkerStub, s: Setup, max_tokens: int
) -> dict[str, Any]:
    streams = [timed_requests.DecodeStream() for _ in range(s.streams)]
    tasks = [
        asyncio.create_task(st.run(mixed, _prompt(100 + i, STREAM_PROMPT_TOKENS), max_tokens))
        for i, st in enumerate(streams)
    ]
    try:
        while any(len(st.times) < 3 for st in streams):
            if done := [t for t in tasks if t.done()]:
                await done[0]
                raise RuntimeError("a decode stream ended before the measurement")
            await asyncio.sleep(0.05)
        start = time.monotonic()
        await asyncio.sleep(s.baseline_s)
        submit = time.monotonic()
        with_decodes = await timed_requests.time_to_first_token(mixed, _prompt(11, s.prompt_tokens))
        done_at = time.monotonic()
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    base = [g for st in streams for g in workers_report.gaps_in(st.times, start, submit)]
    during = [g for st in streams for g in workers_report.gaps_in(st.times, submit, done_at)]
    if not base or not during:
        raise RuntimeError(f"too few tokens: {len(base)} before / {len(during)} during prefill")
    ms = {
        k: 1e3 * workers_report.percentile(v, q)
        for k, v, q in [
            ("b50", base, 50),
            ("b99", base, 99),
            ("d50", during, 50),
            ("d99", during, 99),
        ]
    }
    return {
        "streams": s.streams,
        "itl_p50_ms_base": ms["b50"],
        "itl_p99_ms_base": ms["b99"],
        "itl_p50_ms_prefill": ms["d50"],
        "itl_p99_ms_prefill": ms["d99"],
        "itl_p50_ratio": workers_report.ratio(ms["d50"], ms["b50"]),
        "itl_p99_ratio": workers_report.ratio(ms["d99"], ms["b99"]),
        "itl_max_ms_prefill": 1e3 * max(during),
        "tokens_base": len(base),
        "tokens_during_prefill": len(during),
        "prefill_with_decodes_s": with_decodes,
    }


async def _measure(workers: dict[str, Worker], kv_port: int, s: Setup) -> dict[str, Any]:
    from prfaas.model.config import get_preset

    cfg = get_preset(s.preset)
    max_tokens = min(cfg.max_context - STREAM_PROMPT_TOKENS - 8, 8192)
    addr = {k: w.grpc_address for k, w in workers.items()}
    async with (
        grpc.aio.insecure_channel(addr["mixed"]) as ch_m,
        grpc.aio.insecure_channel(addr["prefill"]) as ch_p,
        grpc.aio.insecure_channel(addr["decode"]) as ch_d,
    ):
        mixed, decode = worker_pb2_grpc.WorkerStub(ch_m), worker_pb2_grpc.WorkerStub(ch_d)
        prefill = worker_pb2_grpc.WorkerStub(ch_p)
        warm = _prompt(1, 2 * s.block_size)
        await timed_requests.time_to_first_token(mixed, warm)
        await timed_requests.remote_prefill(decode, prefill, PREFILL_ID, kv_port, warm)
        loads = {"start": _load()}
        long = _prompt(10, s.prompt_tokens)
        ttft_local = await timed_requests.time_to_first_token(mixed, long)
        loads["remote"] = _load()
        remote = await timed_requests.remote_prefill(decode, prefill, PREFILL_ID, kv_port, long)
        again = await timed_requests.remote_prefill(decode, prefill, PREFILL_ID, kv_port, long)
        loads["interference"] = _load()
        inter = await _interference(mixed, s, max_tokens)
        loads["end"] = _load()
    inter["prefill_alone_s"] = ttft_local
    inter["prefill_slowdown"] = workers_report.ratio(inter["prefill_with_decodes_s"], ttft_local)
    remote_summary = {
        "prefill_s": remote.result.prefill_seconds,
        "queue_s": remote.result.queue_seconds,
        "transfer_s": remote.result.transfer_seconds,
        "exposed_s": remote.result.exposed_transfer_seconds,
        "bytes_sent": remote.result.bytes_sent,
        "layer_bytes": s.prompt_tokens * cfg.kv_bytes_per_token_layer,
        "num_full_layers": len(cfg.full_layers),
        # Re-sending the same prompt hits the prefill worker's prefix cache; its transfer still
        # overlaps the last block's compute, so this is a lower bound on the link's goodput.
        "resend_cached_tokens": again.result.num_cached_tokens,
        "resend_transfer_s": again.result.transfer_seconds,
        "resend_exposed_s": again.result.exposed_transfer_seconds,
        "resend_goodput_mb_s": again.result.bytes_sent / again.result.transfer_seconds / 1e6,
        "ttft_remote_s": remote.ttft_seconds,
        "ttft_local_s": ttft_local,
        "ttft_ratio": workers_report.ratio(remote.ttft_seconds, ttft_local),
    }
    return {"loadavg_phases": loads, "interference": inter, "remote": remote_summary}


def _link_goodput(remote: dict[str, Any], s: Setup) -> None:
    """Goodput of the KV link: the same TcpSender (4 connections, 1 MiB chunks) shipping one
    request's full-attention layers to a receiver process over loopback, capped by the relay's
    rate when shaped; then one layer's ship time and the exposed transfer in units of it."""
    from prfaas.tools.benchmarks.transfer import run_ours

    measured = run_ours("127.0.0.1", remote["num_full_layers"], remote["layer_bytes"], 4, 1.0)
    goodput = measured["bytes_per_s"]
    source = "loopback TcpSender, 4 connections"
    if s.link_mbit > 0 and s.link_mbit * 1e6 / 8 < goodput:
        goodput, source = s.link_mbit * 1e6 / 8, "relay rate cap"
    one_layer = workers_report.ratio(remote["layer_bytes"], goodput)
    exposed_ratio = workers_report.ratio(remote["exposed_s"], one_layer)
    remote.update(
        goodput_mb_s=goodput / 1e6,
        goodput_source=source,
        one_layer_s=one_layer,
        exposed_over_one_layer=exposed_ratio,
        goal_met=exposed_ratio <= 1.0,
    )


def _run(s: Setup, log_dir: Path) -> dict[str, Any]:
    common = ["--backend", "torch", "--preset", s.preset, "--block-size", str(s.block_size)]
    common += ["--cache-budget-mb", str(s.cache_budget_mb)]
    common += ["--max-batched-tokens", str(s.max_batched_tokens)]
    m_spec, mixed = worker_spec("pd", "bench-mixed", common, role="mixed")
    p_spec, prefill = worker_spec("prefill", PREFILL_ID, common)
    d_spec, decode = worker_spec("pd", "bench-decode", common, role="decode")
    specs, kv_port = [m_spec, p_spec, d_spec], decode.kv_port
    if s.link_mbit > 0 or s.link_delay_ms > 0:
        link, kv_port = relay_spec(decode.kv_port, s.link_mbit, s.link_delay_ms)
        specs.append(link)
    sup = Supervisor(log_dir)
    try:
        start_all(sup, specs)
        workers = {"mixed": mixed, "prefill": prefill, "decode": decode}
        measured = asyncio.run(_measure(workers, kv_port, s))
        _link_goodput(measured["remote"], s)
        return measured
    except Exception:
        for child in sup.children:
            print(f"--- {child.spec.name} log ---\n{sup.log_tail(child)}", file=sys.stderr)
        raise
    finally:
        sup.stop_all()


def run(args: argparse.Namespace) -> int:
    s = _setup(args)
    loadavg_start = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="prfaas-bench-") as tmp:
        measured = _run(s, Path(args.log_dir or tmp))
    relayed = s.link_mbit > 0 or s.link_delay_ms > 0
    rate = f"{s.link_mbit:g} Mbit/s" if s.link_mbit > 0 else "uncapped"
    link = f"relay {rate}, {s.link_delay_ms:g} ms delay" if relayed else "direct TCP"
    result = {
        "command": "prfaas " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "preset": s.preset,
        "prompt_tokens": s.prompt_tokens,
        "max_batched_tokens": s.max_batched_tokens,
        "block_size": s.block_size,
        "link": link,
        "loadavg_start": loadavg_start,
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        **measured,
    }
    print(json.dumps(result, indent=2) if args.json else workers_report.render(result))
    return 0
