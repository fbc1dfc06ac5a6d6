"""KV transfer over plain TCP: wire format, sender/receiver, in-process loopback.

Moves byte buffers (memoryviews) and their declared layout; imports no model code.
"""

from prfaas.kvtransfer.base import (
    ChecksumError,
    KVReceiver,
    KVSender,
    PeerLost,
    TransferAborted,
    TransferError,
    TransferRefused,
    TransferState,
    TransferTimeout,
)
from prfaas.kvtransfer.receive_handle import ReceiveHandle
from prfaas.kvtransfer.send_handle import SendHandle

__all__ = [
    "ChecksumError",
    "KVReceiver",
    "KVSender",
    "PeerLost",
    "ReceiveHandle",
    "SendHandle",
    "TransferAborted",
    "TransferError",
    "TransferRefused",
    "TransferState",
    "TransferTimeout",
]
