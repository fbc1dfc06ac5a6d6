"""`prfaas bench transfer --scenario overlap`: exposed transfer time after the last layer.

A producer emits one layer every X ms into an open transfer. Exposed time = from the moment the
last layer is handed to the sender until the receiver has verified the whole transfer (its
`wait_done` returns: the decode side can start then), taken from the receiver process's
CLOCK_MONOTONIC. The yardstick, one layer's ship time, is measured the same way in the same run:
a one-layer transfer on the warm connections, opened, then after the same X ms idle gap its layer
is added and timed until the receiver verified it. Trials alternate yardstick and full transfer;
the figure is the ratio of the medians. The sender-side times (until the receiver's ACK is back)
are reported too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time

import uvloop

from prfaas.kvtransfer.tcp_sender import TcpSender
from prfaas.tools.benchmarks.transfer_peer import SECRET

MIB = 1 << 20


async def _trials(
    port: int, layers: int, nbytes: int, conns: int, chunk_mib: float, every_s: float, reps: int
) -> dict[str, list[float]]:
    peer = ("127.0.0.1", port)
    tx = TcpSender(secret=SECRET, num_connections=conns, chunk_mib=chunk_mib)
    src = [bytearray(os.urandom(min(nbytes, MIB))) * max(1, nbytes // MIB) for _ in range(layers)]
    layout = [[("kv", "u8", len(s))] for s in src]
    warm = tx.open(peer, "warm0", layout[:1])
    warm.add(0, [memoryview(src[0])])
    warm.finish()
    await warm.wait_done()
    t: dict[str, list[float]] = {"ship_add": [], "ship_ack": [], "last_add": [], "ack": []}
    for r in range(reps):
        ship = tx.open(peer, f"ship{r}", layout[:1])
        await asyncio.sleep(every_s)
        t["ship_add"].append(time.monotonic())
        ship.add(0, [memoryview(src[-1 - r % layers])])
        ship.finish()
        await ship.wait_done()
        t["ship_ack"].append(time.monotonic())
        handle = tx.open(peer, f"bench{r}", layout)
        for i, buf in enumerate(src):
            await asyncio.sleep(every_s)
            if i == layers - 1:
                t["last_add"].append(time.monotonic())
            handle.add(i, [memoryview(buf)])
        handle.finish()
        await handle.wait_done()
        t["ack"].append(time.monotonic())
    await tx.close()
    return t


def scenario_overlap(a: argparse.Namespace) -> dict:
    from prfaas.tools.benchmarks.transfer import _peer

    layers, nbytes, reps = 32, 4 * MIB, a.overlap_trials
    proc, port = _peer("kv", "127.0.0.1", layers, nbytes, repeats=reps)
    t = uvloop.run(
        _trials(port, layers, nbytes, a.connections, a.chunk_mib, a.layer_ms / 1e3, reps)
    )
    assert proc.stdout is not None
    done = json.loads(proc.stdout.readline())["done_monotonic"]
    proc.wait(30)
    ship = [done[f"ship{r}"] - t["ship_add"][r] for r in range(reps)]
    exposed = [done[f"bench{r}"] - t["last_add"][r] for r in range(reps)]
    ship_ack = [b - a for a, b in zip(t["ship_add"], t["ship_ack"], strict=True)]
    exposed_ack = [b - a for a, b in zip(t["last_add"], t["ack"], strict=True)]
    med = statistics.median
    return {
        "trials": reps,
        "layer_ship_ms": med(ship) * 1e3,
        "exposed_ms": med(exposed) * 1e3,
        "ratio": med(exposed) / med(ship),
        "ratio_per_trial": [round(e / s, 2) for e, s in zip(exposed, ship, strict=True)],
        "sender_side_until_ack": {
            "layer_ship_ms": med(ship_ack) * 1e3,
            "exposed_ms": med(exposed_ack) * 1e3,
            "ratio": med(exposed_ack) / med(ship_ack),
        },
        "loadavg": os.getloadavg(),
    }
