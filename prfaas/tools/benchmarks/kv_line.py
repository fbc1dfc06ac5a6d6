"""The KV line on loopback: our transfer (plain, fp8, int8) against plain sendall, per-process CPU.

    python -m prfaas.tools.benchmarks.kv_line [--trials 7] [--layers 8] [--tokens 4096] [--elements 512]

A float32 KV of LAYERS x TOKENS x ELEMENTS ("Lnn.kv" buffers; the default row is 2 x 4 heads
x 64) is shipped to a receiver process (kv_line_peer.py) in four modes, trials interleaved
(sendall, none, fp8, int8, sendall, ...) after one untimed warm-up each, so load drifts hit every
mode alike. Per trial: the wall time until the receiver reports the KV in its cache (after
decoding), this process's CPU seconds (user + system, all threads: for fp8/int8 including the encoding,
on a thread as on a worker's compute thread) and the receiver process's (including the decoding
into its cache). Reported per mode: median and min/max of goodput (KV bytes before encoding per
second) and of CPU seconds per GiB of KV, the bytes on the wire, ratios to sendall's medians, and
the sender cores each line rate would need at the measured CPU per GiB (a line of R Gbit/s carries
R/8/wire_ratio GB/s of KV).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time

import torch
import uvloop

from prfaas.kvtransfer.tcp_sender import TcpSender
from prfaas.model import kv_codec
from prfaas.tools.benchmarks.kv_line_peer import SECRET, cpu_seconds, row_bytes, wire_dtype

MODES = ("sendall", "none", "fp8", "int8")
GIB = 1 << 30


class Peer:
    def __init__(self, mode: str, a: argparse.Namespace, trials: int) -> None:
        args = [str(v) for v in (a.layers, a.tokens, a.elements, trials)]
        cmd = [
            sys.executable,
            "-m",
            "prfaas.tools.benchmarks.kv_line_peer",
            "raw" if mode == "sendall" else mode,
            *args,
        ]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)  # fmt: skip
        assert self.proc.stdout is not None
        _, port, cpu = self.proc.stdout.readline().split()
        self.port, self.cpu = int(port), float(cpu)

    def trial_cpu(self) -> float:
        assert self.proc.stdout is not None
        cpu = float(self.proc.stdout.readline().split()[1])
        spent, self.cpu = cpu - self.cpu, cpu
        return spent


async def ship(tx: TcpSender, port: int, tid: str, mode: str, kv: torch.Tensor) -> None:
    layers, tokens, elements = kv.shape
    rb = row_bytes(mode, elements)
    layout = [[(f"L{i:02d}.kv", wire_dtype(mode), tokens * rb)] for i in range(layers)]
    handle = tx.open(("127.0.0.1", port), tid, layout)
    if mode == "none":
        for i in range(layers):
            handle.add(i, [kv[i].view(torch.uint8).numpy().data.cast("B")])
    else:
        keep: list[torch.Tensor] = []

        def encode() -> None:  # the worker's compute thread encodes and hands over layer by layer
            for i in range(layers):
                keep.append(kv_codec.encode_rows(kv[i], mode))
                handle.add_threadsafe(i, [keep[-1].numpy().data.cast("B")], 0)

        await asyncio.to_thread(encode)
    handle.finish(b"")
    await handle.wait_done()


def sendall(port: int, payload: memoryview) -> None:
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(payload)
        s.recv(1)


async def run(a: argparse.Namespace) -> dict:
    torch.set_num_threads(1)
    kv = torch.randn(a.layers, a.tokens, a.elements)
    kv_bytes = kv.numel() * 4
    payload = kv.view(torch.uint8).numpy().data.cast("B")
    modes = [m for m in MODES if m in a.modes.split(",")]
    if "sendall" not in modes:
        raise SystemExit("--modes must include sendall (the baseline)")
    peers = {m: Peer(m, a, a.trials + 1) for m in modes}
    senders = {
        m: TcpSender(secret=SECRET, num_connections=a.connections, chunk_mib=a.chunk_mib)
        for m in modes
        if m != "sendall"
    }
    rows: dict[str, list[tuple[float, float, float]]] = {m: [] for m in modes}
    load = os.getloadavg()
    try:
        for trial in range(a.trials + 1):
            for m in modes:
                c0, t0 = cpu_seconds(), time.perf_counter()
                if m == "sendall":
                    await asyncio.to_thread(sendall, peers[m].port, payload)
                else:
                    await ship(senders[m], peers[m].port, f"t{trial}", m, kv)
                cpu = cpu_seconds() - c0
                peer_cpu = peers[m].trial_cpu()  # returns once the peer decoded into its cache
                wall = time.perf_counter() - t0
                if trial:  # trial 0 warms connections and caches
                    rows[m].append(
                        (kv_bytes / wall, cpu * GIB / kv_bytes, peer_cpu * GIB / kv_bytes)
                    )
    finally:
        for tx in senders.values():
            await tx.close()
        for p in peers.values():
            p.proc.wait(30)
    out: dict = {
        "kv_bytes": kv_bytes,
        "trials": a.trials,
        "loadavg_start": load,
        "loadavg_end": os.getloadavg(),
    }
    for m in modes:
        gp, tx_cpu, rx_cpu = (sorted(col) for col in zip(*rows[m], strict=True))
        wire = (
            kv_bytes if m in ("sendall", "none") else a.layers * a.tokens * row_bytes(m, a.elements)
        )
        out[m] = {
            "goodput_GBps": [round(statistics.median(gp) / 1e9, 3), round(gp[0] / 1e9, 3), round(gp[-1] / 1e9, 3)],
            "sender_cpu_s_per_GiB": [round(statistics.median(tx_cpu), 3), round(tx_cpu[0], 3), round(tx_cpu[-1], 3)],
            "receiver_cpu_s_per_GiB": [round(statistics.median(rx_cpu), 3), round(rx_cpu[0], 3), round(rx_cpu[-1], 3)],
            "wire_ratio": round(wire / kv_bytes, 4),
        }  # fmt: skip
    base = out["sendall"]
    for m in modes:
        r = out[m]
        r["goodput_vs_sendall"] = round(r["goodput_GBps"][0] / base["goodput_GBps"][0], 3)
        r["sender_cpu_vs_sendall"] = round(
            r["sender_cpu_s_per_GiB"][0] / base["sender_cpu_s_per_GiB"][0], 3
        )
        r["receiver_cpu_vs_sendall"] = round(
            r["receiver_cpu_s_per_GiB"][0] / base["receiver_cpu_s_per_GiB"][0], 3
        )
        kv_gibps = {g: g / 8 * 1e9 / r["wire_ratio"] / GIB for g in (10, 25, 50, 100)}
        r["sender_cores_at_gbps"] = {
            g: round(v * r["sender_cpu_s_per_GiB"][0], 2) for g, v in kv_gibps.items()
        }
    return out  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=7)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--elements", type=int, default=512)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--chunk-mib", type=float, default=4.0)
    parser.add_argument(
        "--modes", default=",".join(MODES), help="comma-separated subset of " + ",".join(MODES)
    )
    print(json.dumps(uvloop.run(run(parser.parse_args(argv)))))


if __name__ == "__main__":
    main()
