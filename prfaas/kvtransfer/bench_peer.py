"""Receiving side of `prfaas bench transfer`, run as a separate process (optionally in a netns).

    python -m prfaas.kvtransfer.bench_peer kv|raw HOST LAYERS LAYER_BYTES
Prints `PORT <n>` once listening, then one JSON line when the transfer completed, and exits.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time

import uvloop

from prfaas.kvtransfer.tcp_receiver import TcpReceiver

SECRET = b"prfaas-bench"


def raw(host: str, total: int) -> None:
    srv = socket.create_server((host, 0))
    print(f"PORT {srv.getsockname()[1]}", flush=True)
    conn, _ = srv.accept()
    buf = bytearray(total)
    view, got = memoryview(buf), 0
    while got < total:
        n = conn.recv_into(view[got:])
        if n == 0:
            break
        got += n
    conn.sendall(b"k")
    print(json.dumps({"received": got}), flush=True)


async def kv(host: str, layers: int, nbytes: int) -> None:
    rx = await TcpReceiver(host, 0, secret=SECRET, rcvbuf=None).start()
    dst = [bytearray(nbytes) for _ in range(layers)]
    layout = [[("kv", "u8", nbytes)] for _ in range(layers)]
    handle = rx.expect("bench", layout, [[memoryview(d)] for d in dst], 600)
    # One-layer transfers the sender may ship first: the first opens the connections, the second
    # measures the time to ship one layer on warm connections (the overlap yardstick).
    for tid in ("warm0", "warm1"):
        rx.expect(tid, layout[:1], [[memoryview(bytearray(nbytes))]], 600)
    print(f"PORT {rx.address[1]}", flush=True)
    await handle.wait_done()
    print(json.dumps({"received": handle.bytes_received, "t": time.time()}), flush=True)
    await asyncio.sleep(0.2)
    await rx.close()


if __name__ == "__main__":
    mode, host, n_layers, layer_bytes = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    if mode == "raw":
        raw(host, n_layers * layer_bytes)
    else:
        uvloop.run(kv(host, n_layers, layer_bytes))
