"""How long a prefill will wait and compute on one worker: the router's prediction, and its learning.

A worker drains its prefill queue FCFS (a token budget per step, the head first). When its backend
has a cost model (the emulated backend's profile), the worker reports the compute seconds of the
prefills it holds (`WorkerLoad.prefill_backlog_seconds`): the wait is that backlog, less what the
worker computed since it was asked, plus what this router placed there since
(`WorkerHandle.placed_prefills`) at the worker's speed. A prompt's cost grows faster than its
length (attention), so a token count at an average rate under-predicted queues of long prompts and
spread the load unevenly over PD-P workers (issue 12: 9 H20 queues at 0.9 Λ). Otherwise the router
knows the uncached tokens it queued there
(`WorkerHandle.inflight_prefill_tokens`) and learns the rate at which that worker drains them
(`WorkerHandle.drain_tokens_per_s`): each finished attempt reports the tokens that were ahead of
it plus its own, over the seconds they took (the worker's queue + prefill seconds when it reports
them, else the wall time to the first token). Until a sample exists the worker's own measured
prefill speed is used, then a configured default. The dispatcher uses the prediction twice: to
refuse up front (429 + Retry-After) a request that would wait past its budget, and to size the
deadline of a remote prefill call. Owned by the dispatcher; runs on the router's event loop.
"""

from __future__ import annotations

import time

from prfaas.router.registry import WorkerHandle

DRAIN_EWMA_WEIGHT = 0.3
"""Weight of the newest drain-rate sample (a few requests settle it, one outlier does not)."""


def prefill_speed(worker: WorkerHandle, default_tokens_per_s: float) -> float:
    """Uncached prompt tokens per second the worker gets through its queue."""
    if worker.drain_tokens_per_s > 0:
        return worker.drain_tokens_per_s
    reported = worker.load.prefill_tokens_per_second if worker.load is not None else 0.0
    return reported or default_tokens_per_s


def speed_measured(worker: WorkerHandle) -> bool:
    """Whether the worker's speed is measured (learned here or reported), not the default."""
    reported = worker.load.prefill_tokens_per_second if worker.load is not None else 0.0
    return worker.drain_tokens_per_s > 0 or reported > 0


def predicted_wait_s(worker: WorkerHandle, default_tokens_per_s: float) -> float:
    """Seconds a prefill placed now waits before it starts: the queue ahead at the drain rate.
    A PrfaaS worker that reports nothing waiting for compute has no queue: what this router
    still counts there (until the KV is complete at decode) is KV streaming over the link —
    seconds of it when the link is cut — and a prefill placed now starts at once (issue 12's
    link-cut run refused offloads at a "predicted wait" of 33.6 s made of such KV)."""
    load = worker.load
    speed = prefill_speed(worker, default_tokens_per_s)
    if load is not None and load.HasField("prefill_backlog_seconds"):
        # FCFS: the worker has been computing its backlog since it was asked. Compute only, so a
        # PrfaaS worker's KV still streaming over a cut link is no wait here either.
        unseen = sum(
            tokens
            for placed, tokens in worker.placed_prefills.values()
            if placed >= worker.load_asked_s
        )
        since = time.monotonic() - worker.load_asked_s
        return wait_from_backlog(load.prefill_backlog_seconds, since, unseen, speed)
    if worker.kind == "prefill" and load is not None and load.num_waiting == 0:
        return 0.0
    return worker.inflight_prefill_tokens / speed


def wait_from_backlog(
    backlog_s: float, since_asked_s: float, unseen_tokens: int, speed: float
) -> float:
    """The wait from a worker's reported compute backlog (`prefill_backlog_seconds`, asked
    `since_asked_s` ago: FCFS, the worker has been computing it since) and the uncached tokens
    placed there after it was asked, at `speed` tokens/s. The simulator calls this with its
    workers' backlog (tools/sim/router.py)."""
    return max(0.0, backlog_s - since_asked_s) + unseen_tokens / speed


def predicted_prefill_s(worker: WorkerHandle, tokens: int, default_tokens_per_s: float) -> float:
    """Seconds until a prefill of `tokens` uncached tokens placed now is done: wait + compute."""
    load = worker.load
    if load is not None and load.HasField("prefill_backlog_seconds"):
        own = max(tokens, 1) / prefill_speed(worker, default_tokens_per_s)
        return predicted_wait_s(worker, default_tokens_per_s) + own
    ahead = worker.inflight_prefill_tokens + max(tokens, 1)
    return ahead / prefill_speed(worker, default_tokens_per_s)


def observe_drain(worker: WorkerHandle, tokens: int, seconds: float) -> None:
    """`tokens` (ahead of an attempt, plus its own) were drained in `seconds`: fold the rate in."""
    if tokens <= 0 or seconds <= 0:
        return
    sample = tokens / seconds
    if worker.drain_tokens_per_s <= 0:
        worker.drain_tokens_per_s = sample
    else:
        worker.drain_tokens_per_s += DRAIN_EWMA_WEIGHT * (sample - worker.drain_tokens_per_s)
