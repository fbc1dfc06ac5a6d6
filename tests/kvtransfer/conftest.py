"""Fixtures: a sender/receiver pair for each implementation, with a leak check at the end."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from prfaas.kvtransfer.base import KVReceiver, KVSender, Peer
from prfaas.kvtransfer.loopback import LoopbackNetwork, LoopbackReceiver, LoopbackSender
from prfaas.kvtransfer.tcp_receiver import TcpReceiver
from prfaas.kvtransfer.tcp_sender import TcpSender

SECRET = b"test-secret"


@dataclass
class Pair:
    sender: KVSender
    receiver: KVReceiver
    peer: Peer

    def assert_no_leaks(self) -> None:
        for side in (self.sender, self.receiver):
            counts = side.leak_check()
            leaked = {k: v for k, v in counts.items() if k != "connections" and v}
            assert not leaked, f"{type(side).__name__} leaked {leaked}"


@pytest.fixture(params=["tcp", "loopback"])
async def pair(request: pytest.FixtureRequest) -> AsyncIterator[Pair]:
    if request.param == "tcp":
        receiver = await TcpReceiver(secret=SECRET, open_grace_s=0.3).start()
        sender: KVSender = TcpSender(secret=SECRET, num_connections=3, chunk_mib=1 / 64)
        p = Pair(sender, receiver, receiver.address)
    else:
        net = LoopbackNetwork()
        lrx = LoopbackReceiver(net)
        p = Pair(LoopbackSender(net, chunk_mib=1 / 64), lrx, lrx.address)
    yield p
    await p.sender.close()
    await p.receiver.close()


def make_layers(num_layers: int, nbytes: int, seed: int = 42) -> tuple[list, list[bytearray]]:
    """A layout of `num_layers` layers (two entries each) and random source buffers."""
    import random

    rng = random.Random(seed)
    half = nbytes // 2
    layout = [[("k", "bf16", half), ("v", "bf16", nbytes - half)] for _ in range(num_layers)]
    src = [bytearray(rng.randbytes(nbytes)) for _ in range(num_layers)]
    return layout, src


def split(buf: bytearray, cuts: list[int]) -> list[memoryview]:
    """Segments of `buf` cut at the given offsets."""
    view = memoryview(buf)
    bounds = [0, *sorted(c for c in cuts if 0 < c < len(buf)), len(buf)]
    return [view[a:b] for a, b in zip(bounds, bounds[1:], strict=False) if b > a]
