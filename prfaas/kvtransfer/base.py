"""Interfaces of the KV transfer: state enum, errors, and the sender/receiver ABCs.

Ownership, in one place:
- Receiver side: the engine allocates the destination buffers and passes memoryviews to
  `KVReceiver.expect`. The receiver writes into them until the transfer reaches a terminal state,
  then drops every reference (`ReceiveHandle.dest` becomes None). On DONE the engine installs the
  cache; on FAILED/ABORTED it frees the memory (nothing was installed).
- Sender side: the producer passes memoryviews to `SendHandle.add`; the sender keeps references
  until the bytes are on the wire (written to the kernel). The producer must not overwrite or free
  them until `wait_done()` returns or raises; after a terminal state the sender holds none.
"""

from __future__ import annotations

import abc
import enum

from prfaas.kvtransfer.wire import LayerLayout

Peer = tuple[str, int]


class TransferState(enum.Enum):
    PENDING = "pending"
    TRANSFERRING = "transferring"
    DONE = "done"
    FAILED = "failed"
    ABORTED = "aborted"

    @property
    def terminal(self) -> bool:
        return self in (TransferState.DONE, TransferState.FAILED, TransferState.ABORTED)


class TransferError(Exception):
    """A transfer did not complete; nothing may be installed from it."""


class TransferTimeout(TransferError):
    """The receiver's deadline passed before the transfer completed."""


class ChecksumError(TransferError):
    """A chunk checksum or the transfer digest did not match."""


class PeerLost(TransferError):
    """The connection to the peer broke (peer died, link cut, protocol error)."""


class TransferRefused(TransferError):
    """The peer refused the transfer (unknown, duplicate, layout mismatch, unauthenticated)."""


class TransferAborted(TransferError):
    """One side called abort(reason)."""


class KVReceiver(abc.ABC):
    """Accepts transfers into preallocated destination memory. All methods run on the event loop."""

    @abc.abstractmethod
    def expect(
        self,
        transfer_id: str,
        layout: list[LayerLayout],
        dest_segments: list[list[memoryview]],
        deadline_s: float,
        *,
        sender_identity: str | None = None,
    ):  # -> ReceiveHandle
        """Register a transfer; returns at once. `dest_segments[i]` is layer i's logical buffer
        as writable segments (their total must equal the layer's nbytes). The transfer fails with
        TransferTimeout if not DONE within `deadline_s`. Raises TransferRefused if the id is
        already registered."""

    @abc.abstractmethod
    def leak_check(self) -> dict[str, int]:
        """Counts that must all be zero once every transfer ended: registered transfers, pinned
        destination buffers, live per-transfer tasks."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Fail every open transfer (PeerLost), close connections and stop listening."""


class KVSender(abc.ABC):
    """Ships layers to receivers. All methods run on the event loop unless marked thread-safe."""

    @abc.abstractmethod
    def open(
        self, peer: Peer, transfer_id: str, layout: list[LayerLayout], metadata: bytes = b""
    ):  # -> SendHandle
        """Start a transfer to `peer` (non-blocking; connects in the background)."""

    @abc.abstractmethod
    def leak_check(self) -> dict[str, int]:
        """Counts that must be zero once every transfer ended: open transfers, pinned source
        buffers (queued chunks), live per-transfer tasks."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Fail every open transfer and close all connections."""
