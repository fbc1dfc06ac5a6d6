"""Move a cached prefix between clusters before a request runs (paper §2.3, abundant bandwidth).

When the policy decides `cross_cluster_transfer` (the longest cache sits in the other cluster), the
dispatcher calls `move_prefix` before starting the request:
  1. `ImportPrefix` on the computing worker (the target); wait for `Admitted`, which the target
     sends only after its KV receiver registered the transfer id;
  2. `ExportPrefix` on the holder, towards the target's KV receiver as the holder reaches it;
  3. wait for the target's `done` (its prefix cache now holds the prefix; cache events follow).
Everything runs under one deadline; every call is cancelled on exit (the workers free their pins
and reservations on cancellation). A move never fails the request: the outcome says what happened
and the request then runs with or without the moved cache.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import grpc

from prfaas._proto.prfaas.v1 import worker_pb2
from prfaas.router.registry import WorkerHandle


@dataclass(frozen=True)
class PrefixMove:
    outcome: str
    """"imported", "skipped" (nothing to move, no KV receiver) or "failed"."""
    num_tokens: int = 0
    """Prefix tokens now cached on the target (0 unless imported)."""
    detail: str = ""
    bytes_sent: int = 0
    """What the holder's ExportPrefix reported sending (0 when it did not answer in time)."""


def prefix_to_move(prompt: Sequence[int], cached_tokens: int, block_size: int) -> list[int]:
    """The whole blocks of the decided cached prefix, leaving at least one prompt token to
    compute (a worker's prefix lookup never uses more)."""
    usable = min(cached_tokens, len(prompt) - 1)
    return list(prompt[: max(usable, 0) // block_size * block_size])


async def move_prefix(
    target: WorkerHandle,
    holder: WorkerHandle,
    tokens: list[int],
    block_size: int,
    timeout_s: float,
    move_id: str = "",
) -> PrefixMove:
    """Run import + export under `timeout_s`; never raises except on cancellation."""
    if not tokens:
        return PrefixMove("skipped", detail="no whole block to move")
    if not target.kv_address and not target.kv_link_address:
        return PrefixMove("skipped", detail=f"{target.worker_id} has no KV receiver")
    move_id = move_id or uuid.uuid4().hex
    transfer_id = uuid.uuid4().hex
    host, port = target.kv_destination(holder.kind)
    call = target.stub.ImportPrefix(
        worker_pb2.ImportPrefixRequest(
            import_id=f"{move_id}.import", token_ids=tokens, block_size=block_size,
            transfer_id=transfer_id, sender_id=holder.worker_id, deadline_seconds=timeout_s,
        ), timeout=timeout_s,
    )  # fmt: skip
    export: asyncio.Future[worker_pb2.ExportPrefixResult] | None = None
    try:
        async with asyncio.timeout(timeout_s):
            first = await call.read()
            if first is grpc.aio.EOF or first.WhichOneof("event") != "admitted":
                return PrefixMove("failed", detail=f"import not admitted: {first}")
            dest = worker_pb2.KvDestination(host=host, port=port, transfer_id=transfer_id)
            export = asyncio.ensure_future(
                holder.stub.ExportPrefix(
                    worker_pb2.ExportPrefixRequest(
                        export_id=f"{move_id}.export",
                        token_ids=tokens,
                        block_size=block_size,
                        destination=dest,
                        deadline_seconds=timeout_s,
                    ),
                    timeout=timeout_s,
                )  # fmt: skip
            )
            read = asyncio.ensure_future(call.read())
            await asyncio.wait([read, export], return_when=asyncio.FIRST_COMPLETED)
            if not read.done() and export.exception() is not None:
                # The export failed first (not cached, dead link): do not wait out the import.
                read.cancel()
                return PrefixMove("failed", detail=f"export: {_describe(export.exception())}")
            last = await read
            if last is grpc.aio.EOF or last.WhichOneof("event") != "done":
                detail = "stream ended" if last is grpc.aio.EOF else str(last.error.message)
                return PrefixMove("failed", detail=f"import: {detail}")
            # The holder returns once it saw the receiver's acknowledgement: let it, so it does
            # not count a finished transfer as cancelled.
            await asyncio.wait([export], timeout=1.0)
            sent = export.result().bytes_sent if export.done() and not export.exception() else 0
            return PrefixMove("imported", last.done.num_tokens, bytes_sent=sent)
    except TimeoutError:
        return PrefixMove("failed", detail=f"no import within {timeout_s:.1f}s")
    except grpc.aio.AioRpcError as exc:
        return PrefixMove("failed", detail=_describe(exc))
    finally:
        call.cancel()
        if export is not None:
            export.cancel()
            export.add_done_callback(_consume)


def _describe(exc: BaseException | None) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    return repr(exc)


def _consume(future: asyncio.Future[worker_pb2.ExportPrefixResult]) -> None:
    """Retrieve a finished export's outcome so asyncio never logs it as unretrieved."""
    if not future.cancelled():
        future.exception()
