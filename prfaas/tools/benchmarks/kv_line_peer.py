"""Receiving side of `python -m prfaas.tools.benchmarks.kv_line`, a separate process so its CPU time is
its own. Usage: kv_line_peer MODE LAYERS TOKENS ROW_ELEMENTS TRIALS (MODE: raw | none | fp8 | int8).

Prints `PORT <n> <cpu>` once listening, then after each trial (the KV received and, for fp8/int8,
decoded into the float32 destination cache) one line `<trial> <cpu>`: this process's cumulative
CPU seconds (user + system, all threads). The peer idles between trials, so consecutive
differences are one trial's receive cost."""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
import time

import torch
import uvloop

from prfaas.kvtransfer.tcp_receiver import TcpReceiver
from prfaas.model import kv_codec

SECRET = b"prfaas-kv-line"


def cpu_seconds() -> float:
    """This process's CPU seconds (user + system), all threads, ended ones included."""
    return time.process_time()


def wire_dtype(mode: str) -> str:
    return "float32" if mode == "none" else f"kvq1:{mode}:g{kv_codec.GROUP}:float32"


def row_bytes(mode: str, elements: int) -> int:
    return 4 * elements if mode == "none" else kv_codec.encoded_row_bytes(elements)


def raw(layers: int, tokens: int, elements: int, trials: int) -> None:
    total = layers * tokens * elements * 4
    buf = bytearray(b"\x01") * total
    srv = socket.create_server(("127.0.0.1", 0))
    print(f"PORT {srv.getsockname()[1]} {cpu_seconds()}", flush=True)
    for trial in range(trials):
        conn, _ = srv.accept()
        view, got = memoryview(buf), 0
        # MSG_WAITALL: one blocking call per trial, the kernel fills the buffer (like sendall)
        while got < total and (n := conn.recv_into(view[got:], 0, socket.MSG_WAITALL)):
            got += n
        conn.sendall(b"k")
        conn.close()
        print(f"{trial} {cpu_seconds()}", flush=True)


async def kv(mode: str, layers: int, tokens: int, elements: int, trials: int) -> None:
    # Generous timeouts: at load 10+ a handshake can wait seconds for a core (a refused or closed
    # connection then reads as the sender's PeerLost; the log line on stderr says which).
    rx = await TcpReceiver(
        "127.0.0.1", 0, secret=SECRET, handshake_timeout_s=60.0, open_grace_s=60.0
    ).start()
    rb = row_bytes(mode, elements)
    layout = [[(f"L{i:02d}.kv", wire_dtype(mode), tokens * rb)] for i in range(layers)]
    cache = torch.ones(layers, tokens, elements)  # the destination cache, touched
    staging = torch.ones(layers, tokens, rb, dtype=torch.uint8)
    land = cache.view(torch.uint8).view(layers, tokens, -1) if mode == "none" else staging
    dest = [[land[i].numpy().data.cast("B")] for i in range(layers)]
    print(f"PORT {rx.address[1]} {cpu_seconds()}", flush=True)
    # Every trial expected up front (one destination: trials run one after another).
    handles = [rx.expect(f"t{trial}", layout, dest, 600) for trial in range(trials)]
    for trial, handle in enumerate(handles):
        await handle.wait_done()
        if mode != "none":
            for i in range(layers):
                kv_codec.decode_rows(staging[i], cache[i], mode)
        print(f"{trial} {cpu_seconds()}", flush=True)
    # Close only once the sender did: closing first races the last ACK (the sender fails a link
    # when any of its connections sees EOF, possibly before the one carrying the ACK is read).
    async with asyncio.timeout(60):
        while rx.leak_check()["connections"]:
            await asyncio.sleep(0.05)
    await rx.close()


if __name__ == "__main__":
    mode = sys.argv[1]
    layers, tokens, elements, trials = (int(a) for a in sys.argv[2:6])
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    if mode == "raw":
        raw(layers, tokens, elements, trials)
    else:
        torch.set_num_threads(1)
        uvloop.run(kv(mode, layers, tokens, elements, trials))
