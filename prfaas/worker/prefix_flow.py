"""Export / import a cached prefix between workers over the KV transport (paper §2.3).

Import (target side, `import_prefix`), run before the export:
1. reserve private blocks for the prefix's whole blocks + one state slot on the compute thread;
2. register the KV receiver for `transfer_id` into those blocks, then yield `ImportAdmitted`
   (the router starts the export only after that, or the sender would be refused);
3. on DONE check the trailer (same length, same last chained block hash), commit the blocks into
   the prefix cache (cache events reach the router's index) and yield `ImportDone`;
   on any failure or cancellation abort the transfer, free the reservation, yield `ImportFailed`.
Export (holder side, `export_prefix`): pin exactly the requested prefix (KV blocks + the end
checkpoint) so eviction cannot free it, ship every layer (full layers: KV of tokens [0, L); linear
layers: the checkpoint's state), wait for the receiver's acknowledgement, unpin — always, also on
failure and cancellation. Span ids are unique per call, so a duplicate request id can never end
another call's span.
"""

from __future__ import annotations

import asyncio
import struct
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from prfaas.kvtransfer.base import KVReceiver, KVSender, Peer, TransferError
from prfaas.worker.compute import ComputeLoop
from prfaas.worker.wire_inputs import wire_layout

_TRAILER = struct.Struct("<4sHHiQ")
_MAGIC = b"PFPX"


def encode_trailer(num_tokens: int, last_hash: int) -> bytes:
    return _TRAILER.pack(_MAGIC, 1, 0, num_tokens, last_hash)


def check_trailer(data: bytes, num_tokens: int, last_hash: int) -> None:
    """Raise ValueError unless the trailer names exactly this prefix."""
    if len(data) != _TRAILER.size:
        raise ValueError(f"prefix trailer has {len(data)} bytes, expected {_TRAILER.size}")
    magic, version, _, n, h = _TRAILER.unpack(data)
    if magic != _MAGIC or version != 1:
        raise ValueError(f"bad prefix trailer (magic {magic!r}, version {version})")
    if n != num_tokens or h != last_hash:
        raise ValueError(f"sender exported another prefix ({n} tokens, last hash {h:x})")


class PrefixFlowError(Exception):
    """An export failed; `code` is the stable kind reported to the router."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class ImportAdmitted:
    pass


@dataclass(frozen=True)
class ImportDone:
    num_tokens: int
    bytes_received: int
    transfer_seconds: float


@dataclass(frozen=True)
class ImportFailed:
    code: str
    message: str


ImportEvent = ImportAdmitted | ImportDone | ImportFailed


@dataclass(frozen=True)
class ExportReport:
    num_tokens: int
    bytes_sent: int
    transfer_seconds: float


def _span_id(kind: str, call_id: str) -> str:
    return f"{kind}:{call_id}:{uuid.uuid4().hex[:8]}"


async def import_prefix(
    compute: ComputeLoop,
    receiver: KVReceiver,
    import_id: str,
    token_ids: list[int],
    transfer_id: str,
    sender_id: str,
    deadline_s: float,
) -> AsyncIterator[ImportEvent]:
    """Receive a prefix into this worker's prefix cache; frees everything on any other exit."""
    sid = _span_id("import", import_id)
    handle = None
    # Set before the call: a cancelled await still lets the reservation run, and the abort queued
    # after it on the compute thread then frees it (abort of an unknown span is a no-op).
    reserved = True
    try:
        try:
            span = await compute.call(lambda e: e.reserve_prefix_import(sid, token_ids))
        except ValueError as exc:
            yield ImportFailed("refused", str(exc))
            return
        layout, dest = await compute.call(lambda e: (e.span_layout(span), e.span_segments(span)))
        started = time.monotonic()
        handle = receiver.expect(
            transfer_id, wire_layout(layout), dest, deadline_s, sender_identity=sender_id or None
        )
        del dest
        yield ImportAdmitted()
        try:
            check_trailer(await handle.wait_done(), len(token_ids), span.hashes[-1])
        except (TransferError, ValueError) as exc:
            yield ImportFailed("kv_transfer_failed", f"{type(exc).__name__}: {exc}")
            return
        reserved = False
        num = await asyncio.shield(compute.call(lambda e: e.commit_prefix_import(sid)))
        nbytes = sum(s.nbytes for s in layout)
        yield ImportDone(num, nbytes, time.monotonic() - started)
    finally:
        if handle is not None and not handle.state.terminal:
            handle.abort("import side gave up")
        if reserved:
            await asyncio.shield(compute.call(lambda e: e.abort_prefix_import(sid)))


async def export_prefix(
    compute: ComputeLoop,
    sender: KVSender,
    export_id: str,
    token_ids: list[int],
    destination: Peer,
    transfer_id: str,
    timeout_s: float,
) -> ExportReport:
    """Ship a pinned prefix; raises PrefixFlowError. Unpins before returning, also on cancel."""
    sid = _span_id("export", export_id)
    handle = None
    try:
        try:
            span = await compute.call(lambda e: e.pin_prefix(sid, token_ids))
        except ValueError as exc:
            raise PrefixFlowError("not_cached", str(exc)) from exc
        layout, segments = await compute.call(
            lambda e: (e.span_layout(span), e.span_segments(span))
        )
        started = time.monotonic()
        handle = sender.open(destination, transfer_id, wire_layout(layout), sid.encode()[:256])
        for layer, segs in enumerate(segments):
            handle.add(layer, segs, 0)
        del segments
        handle.finish(encode_trailer(len(token_ids), span.hashes[-1]))
        await asyncio.wait_for(handle.wait_done(), timeout_s)
        return ExportReport(
            len(token_ids), sum(s.nbytes for s in layout), time.monotonic() - started
        )
    except (TransferError, TimeoutError) as exc:
        raise PrefixFlowError("kv_transfer_failed", f"{type(exc).__name__}: {exc}") from exc
    finally:
        if handle is not None and not handle.state.terminal:
            handle.abort("export side gave up")
        # Queued after the pin on the compute thread, so it also ends a pin whose await was
        # cancelled; unpinning an unknown span is a no-op.
        await asyncio.shield(compute.call(lambda e: e.unpin_prefix(sid)))
