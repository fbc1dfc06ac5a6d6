"""One simulated request: its inputs and, as it runs, where it went and when its tokens came."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(eq=False, slots=True)
class SimRequest:
    index: int
    arrival_s: float
    input_tokens: int
    output_tokens: int
    block_hashes: tuple[int, ...] = ()
    """Chained block hashes of the prompt's full blocks (Mooncake traces), empty when unique."""
    # Filled while the request runs.
    route: str = ""
    """'policy/route/reason', the router's routing counter key."""
    prefill_worker: str = ""
    decode_worker: str = ""
    cached_tokens: int = 0
    prefill_start_s: float | None = None
    prefill_end_s: float | None = None
    first_token_s: float | None = None
    decode_join_s: float | None = None
    finish_s: float | None = None
    step_s: float = 0.0
    """Decode step time this request saw."""
    kv_bytes: float = 0.0
    offloaded: bool = False
    error: str | None = None
