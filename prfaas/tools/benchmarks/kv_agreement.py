"""Greedy agreement of KV compression on the line with the uncompressed path (issue 16 item 2).

    python -m prfaas.tools.benchmarks.kv_agreement [--preset small] [--prompts 200] [--tokens 32]

Each prompt is prefilled on one engine and shipped (worker flows, loopback transport) to a
decode-only request on a second engine, once plain and once per scheme; the greedy tokens of the
compressed runs are compared with the plain run's, position by position. Prints one JSON object:
per scheme the share of identical tokens, the share of prompts with every token identical, the
first divergence positions (median and minimum over prompts that diverged), and the bytes on the
wire against plain. Prompts are random ids (seeded), lengths uniform in [--min-len, --max-len].
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time

from prfaas.device import configure_threads
from prfaas.engine.backend_torch import TorchBackend
from prfaas.engine.core import EngineCore
from prfaas.kvtransfer.loopback import LoopbackNetwork, LoopbackReceiver, LoopbackSender
from prfaas.model.config import get_preset
from prfaas.model.hybrid import HybridModel
from prfaas.request import Request, RequestKind
from prfaas.sampling import SamplingParams
from prfaas.worker.compute import ComputeLoop
from prfaas.worker.generate_flow import KvSourceSpec, Tokens, generate
from prfaas.worker.prefill_flow import prefill_and_ship


async def _offload(
    prefill: ComputeLoop,
    decode: ComputeLoop,
    sender: LoopbackSender,
    receiver: LoopbackReceiver,
    prompt: list[int],
    params: SamplingParams,
    rid: str,
    scheme: str,
) -> tuple[list[int], int]:
    dreq = Request(rid, list(prompt), params, kind=RequestKind.DECODE_ONLY)
    events: list = []

    async def decode_side() -> None:
        source = KvSourceSpec(f"t-{rid}", "", 120.0)
        async for ev in generate(
            decode, dreq, receiver=receiver, source=source, kv_compression=scheme
        ):
            events.append(ev)

    task = asyncio.create_task(decode_side())
    while not events:
        await asyncio.sleep(0.001)
    preq = Request(rid, list(prompt), params, kind=RequestKind.PREFILL_ONLY)
    report = await prefill_and_ship(
        prefill, sender, preq, receiver.address, f"t-{rid}", kv_compression=scheme
    )
    await task
    return [t for ev in events if isinstance(ev, Tokens) for t in ev.ids], report.bytes_sent


async def run(args: argparse.Namespace) -> dict:
    configure_threads(1)
    model = HybridModel(get_preset(args.preset))
    model.eval()

    def make_compute() -> ComputeLoop:
        def make_engine(hooks) -> EngineCore:  # noqa: ANN001
            backend = TorchBackend(model, block_size=256)
            return EngineCore(backend, cache_budget_bytes=256 << 20, on_layer_done=hooks)

        loop = ComputeLoop(make_engine)
        loop.start()
        return loop

    rng = random.Random(args.seed)
    prompts = [
        [
            rng.randrange(model.config.vocab_size)
            for _ in range(rng.randint(args.min_len, args.max_len))
        ]
        for _ in range(args.prompts)
    ]
    params = SamplingParams(temperature=0.0, max_tokens=args.tokens, ignore_eos=True)
    net = LoopbackNetwork()
    sender, receiver = LoopbackSender(net), LoopbackReceiver(net)
    prefill, decode = make_compute(), make_compute()
    schemes = ["none", *args.schemes]
    tokens: dict[str, list[list[int]]] = {s: [] for s in schemes}
    wire: dict[str, int] = dict.fromkeys(schemes, 0)
    t0 = time.monotonic()
    try:
        for i, prompt in enumerate(prompts):
            for s in schemes:
                out, sent = await _offload(
                    prefill, decode, sender, receiver, prompt, params, f"{s}{i}", s
                )
                tokens[s].append(out)
                wire[s] += sent
    finally:
        await sender.close()
        await receiver.close()
        await prefill.stop()
        await decode.stop()
    result: dict = {
        "preset": args.preset,
        "prompts": args.prompts,
        "tokens_per_prompt": args.tokens,
        "prompt_len": [args.min_len, args.max_len],
        "seconds": round(time.monotonic() - t0, 1),
        "wire_bytes_plain": wire["none"],
    }
    for s in args.schemes:
        same = total = identical = 0
        first_div: list[int] = []
        for ref, got in zip(tokens["none"], tokens[s], strict=True):
            same += sum(a == b for a, b in zip(ref, got, strict=True))
            total += len(ref)
            div = next((j for j, (a, b) in enumerate(zip(ref, got, strict=True)) if a != b), None)
            if div is None:
                identical += 1
            else:
                first_div.append(div)
        result[s] = {
            "identical_token_share": round(same / total, 4),
            "identical_prompt_share": round(identical / len(prompts), 4),
            "diverged_prompts": len(first_div),
            "first_divergence_median": statistics.median(first_div) if first_div else None,
            "first_divergence_min": min(first_div) if first_div else None,
            "wire_bytes": wire[s],
            "wire_ratio": round(wire[s] / wire["none"], 4),
        }
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--prompts", type=int, default=200)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--min-len", type=int, default=64)
    parser.add_argument("--max-len", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--schemes", nargs="+", default=["fp8", "int8"])
    print(json.dumps(asyncio.run(run(parser.parse_args(argv)))))


if __name__ == "__main__":
    main()
