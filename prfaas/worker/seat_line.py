"""The line for decode seats: a PD worker refuses a decode-only admission past its seats (issue 17).

A decode-only request (the Generate with a `KvSource` that precedes `Admitted`, router/
two_worker_handshake.py) takes a seat (max_num_seqs, BS_max) when its KV is complete, not while
its prefill waits in another worker's queue (issue 12: counting those filled the seats with queued
prefills and capacity dropped). So admission itself was bounded by memory alone, and a router that
placed on a report one poll old (or two router replicas, each seeing the other's requests only
through that report) could send more requests than the seats: they waited in the engine's
`kv_ready` queue, first token already sent (`prfaas bench router-replicas`: 1.14x of the seats on
average with two routers, peaks of 2x).

The bound. In line for a seat are the requests that will need one before a request admitted now
could: the running batch, the requests whose KV arrived with every seat taken (`kv_ready`), and
decode-only transfers already past half their bytes (KV ships layer by layer as the prefill
computes, so such a prefill is running, not queued, and is past its middle). A decode-only
admission is refused with `overloaded` (retryable: the router tries another decode worker, or
answers 429 with Retry-After) when that line already holds `max_num_seqs + slack`. With slack 0
this is the router's own placement rule (policy._pick_decode: a decode worker whose running batch,
running + kv_ready as `WorkerLoad.num_running` reports it, fills its seats takes no one) applied
with the worker's live counts, plus the transfers about to join them: it refuses what the router
would have refused with a current view. Requests whose prefill is queued, or whose KV has only
begun to arrive, are not counted, so the worker still admits work it will seat in time while its
batch turns over. A larger slack lets up to that many more wait in `kv_ready`; a negative slack
turns the bound off (`--decode-admission-slack`, worker/options.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prfaas.kvtransfer.base import TransferState
from prfaas.kvtransfer.receive_handle import ReceiveHandle
from prfaas.kvtransfer.wire import layer_nbytes

NEARLY_DONE_FRACTION = 0.5
"""A transfer with at least this fraction of its bytes received counts in the line."""


class SeatsFull(ValueError):
    """A decode-only admission refused: the line for seats is full (code `overloaded`)."""


@dataclass
class SeatLine:
    """One worker's bound on the decode seat line, and its decode-only transfers in progress
    (event loop only; the count is handed to the compute thread with the admission)."""

    max_num_seqs: int
    slack: int = 0
    """Requests allowed in line past `max_num_seqs` (negative: never refuse)."""
    _arriving: dict[str, tuple[ReceiveHandle, int]] = field(default_factory=dict)

    def track(self, request_id: str, handle: ReceiveHandle) -> None:
        total = sum(layer_nbytes(layer) for layer in handle.layout)
        self._arriving[request_id] = (handle, total)

    def untrack(self, request_id: str) -> None:
        self._arriving.pop(request_id, None)

    def nearly_done(self) -> int:
        """Tracked transfers still in progress with at least `NEARLY_DONE_FRACTION` received."""
        return sum(
            1
            for handle, total in self._arriving.values()
            if handle.state is TransferState.TRANSFERRING
            and handle.bytes_received >= NEARLY_DONE_FRACTION * total
        )

    def refusal(self, with_kv: int, arriving: int) -> str | None:
        """Why a decode-only admission is refused (None: admit). `with_kv`: the running batch and
        `kv_ready`; `arriving`: `nearly_done()` when the admission was asked for."""
        if self.slack < 0:
            return None
        in_line = with_kv + arriving
        if in_line < self.max_num_seqs + self.slack:
            return None
        return (
            f"{in_line} requests hold or are about to need the {self.max_num_seqs} decode seats "
            f"({with_kv} with their KV, {arriving} arriving; slack {self.slack})"
        )
