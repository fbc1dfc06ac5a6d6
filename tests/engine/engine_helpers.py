"""Engine test helpers: an EngineCore over the instant NullBackend, sized in blocks and slots."""

from __future__ import annotations

from prfaas.engine.core import EngineCore
from prfaas.engine.execution_backend import NullBackend, hash_next_token
from prfaas.engine.prefix_cache import CacheEvent
from prfaas.request import Request, RequestKind
from prfaas.sampling import SamplingParams

BLOCK = 64
# NullBackend costs: a block is 64 * 16 = 1024 B, a state slot 1024 B, so budgets count entries.
ENTRY = 1024


def make_engine(
    entries: int = 64, events: list[CacheEvent] | None = None, **kwargs: object
) -> EngineCore:
    backend = NullBackend(block_size=BLOCK, kv_bytes_per_token=16, state_bytes=ENTRY)
    kwargs.setdefault("max_num_batched_tokens", 256)
    listener = events.append if events is not None else None
    return EngineCore(
        backend, cache_budget_bytes=entries * ENTRY, cache_listener=listener, **kwargs
    )  # type: ignore[arg-type]


def make_req(
    rid: str,
    prompt: list[int] | int,
    max_tokens: int = 4,
    kind: RequestKind = RequestKind.FULL,
) -> Request:
    tokens = list(range(1, prompt + 1)) if isinstance(prompt, int) else prompt
    params = SamplingParams(temperature=0.0, max_tokens=max_tokens)
    return Request(rid, [t % 256 for t in tokens], params, kind=kind)


def expected_tokens(prompt: list[int], max_tokens: int) -> list[int]:
    """What NullBackend generates: each token hashes the whole sequence before it."""
    seq = list(prompt)
    for _ in range(max_tokens):
        seq.append(hash_next_token(seq, 256))
    return seq[len(prompt) :]


def run_until_idle(engine: EngineCore, max_steps: int = 1000) -> list:
    outs = []
    for _ in range(max_steps):
        if not engine.has_work:
            return outs
        outs.extend(engine.step())
        engine.check_invariants()
    raise AssertionError("engine did not go idle")
