"""Receiving side of `prfaas bench transfer`, run as a separate process (optionally in a netns).

    python -m prfaas.tools.benchmarks.transfer_peer kv|raw HOST LAYERS LAYER_BYTES [REPEATS]
Prints `PORT <n>` once listening. `kv` expects transfers `bench` (REPEATS=1) or `bench0` ..
`bench{REPEATS-1}` of LAYERS layers, and one-layer transfers `warm0`, `warm1`, `ship0`.. the sender
may ship first; once every `bench*` transfer completed it prints one JSON line with the
CLOCK_MONOTONIC time (system-wide, so comparable with the sender's) at which each transfer
completed on this side, and exits. Destination buffers are touched first and stay alive until
exit, as an engine's preallocated KV cache would (freeing 128 MiB inside the timed window would
charge munmap to the transfer).
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
    buf = bytearray(b"\x01") * total  # touched, like the kv peer's destination
    print(f"PORT {srv.getsockname()[1]}", flush=True)
    conn, _ = srv.accept()
    view, got = memoryview(buf), 0
    while got < total:
        n = conn.recv_into(view[got:])
        if n == 0:
            break
        got += n
    conn.sendall(b"k")
    print(json.dumps({"received": got}), flush=True)


def _touched(n: int) -> memoryview:
    return memoryview(bytearray(b"\x01") * n)


async def kv(host: str, layers: int, nbytes: int, repeats: int = 1) -> None:
    rx = await TcpReceiver(host, 0, secret=SECRET, rcvbuf=None).start()
    layout = [[("kv", "u8", nbytes)] for _ in range(layers)]
    done: dict[str, float] = {}
    cache: list[memoryview] = []

    def expect(tid: str, n_layers: int) -> asyncio.Task[None]:
        dest = [_touched(nbytes) for _ in range(n_layers)]
        cache.extend(dest)
        handle = rx.expect(tid, layout[:n_layers], [[d] for d in dest], 600)

        async def watch() -> None:
            await handle.wait_done()
            done[tid] = time.monotonic()

        return asyncio.create_task(watch())

    names = ["bench"] if repeats == 1 else [f"bench{r}" for r in range(repeats)]
    main = [expect(tid, layers) for tid in names]
    # One-layer transfers: the first opens the connections, the others measure one layer's ship.
    side = [expect(tid, 1) for tid in ("warm0", "warm1", *(f"ship{r}" for r in range(repeats)))]
    print(f"PORT {rx.address[1]}", flush=True)
    await asyncio.gather(*main)
    print(json.dumps({"done_monotonic": done}), flush=True)
    await asyncio.sleep(0.2)
    for task in side:
        task.cancel()
    await rx.close()


if __name__ == "__main__":
    mode, host, n_layers, layer_bytes = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    if mode == "raw":
        raw(host, n_layers * layer_bytes)
    else:
        uvloop.run(kv(host, n_layers, layer_bytes, int(sys.argv[5]) if len(sys.argv) > 5 else 1))
