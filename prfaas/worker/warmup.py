"""Warm a worker's engine before it reports SERVING.

The first forward pass of a process pays one-time costs (torch's lazy kernel and allocator set-up,
first touches of activation memory) that made the first real request after `prfaas up` miss its
prefill deadline. One short request through the real engine path — a chunked prefill, then decode
steps — pays them before the health service turns SERVING (worker/server.py).

The prompt is shorter than one cache block, so nothing enters the prefix cache and no cache event
is announced: the engine is exactly as clean afterwards as before (checked by its leak report).
"""

from __future__ import annotations

import logging
import time

from prfaas.request import Request
from prfaas.sampling import SamplingParams
from prfaas.worker.compute import ComputeLoop
from prfaas.worker.generate_flow import Failed, generate

log = logging.getLogger(__name__)

WARMUP_REQUEST_ID = "prfaas-warmup"
_MAX_PROMPT_TOKENS = 200
_OUTPUT_TOKENS = 3


async def warm_up(compute: ComputeLoop, block_size: int) -> float:
    """Run one short greedy request to completion; returns its wall seconds. Raises RuntimeError
    if the engine cannot serve it (a worker that cannot run one request must not report ready)."""
    n = max(1, min(block_size - 1, _MAX_PROMPT_TOKENS))
    # Byte ids (1..255) are valid prompt ids for every backend and tokenizer the worker serves.
    prompt = [1 + (i * 37) % 255 for i in range(n)]
    params = SamplingParams(temperature=0.0, max_tokens=_OUTPUT_TOKENS, ignore_eos=True)
    started = time.monotonic()
    async for event in generate(compute, Request(WARMUP_REQUEST_ID, prompt, params)):
        if isinstance(event, Failed):
            raise RuntimeError(f"warm-up request failed: {event.code}: {event.message}")
    seconds = time.monotonic() - started
    log.info("engine warmed up in %.2f s (%d prompt tokens, %d decode steps)", seconds, n,
             _OUTPUT_TOKENS - 1)  # fmt: skip
    return seconds
