"""`prfaas bench transfer`: KV transfer goodput and overlap, each figure against a baseline of the
same run. The receiving side always runs in a separate process (`transfer_peer`).

Scenarios: `loopback` (ours vs single-socket sendall, interleaved trials, per-process CPU), `relay` (20 ms one-way delay through
`prfaas link`: 1 vs 4 connections), `overlap` (one layer every X ms: exposed time after the last
layer vs one layer's ship time), `netns` (veth shaped with tbf to 1 and 10 Gbit/s: ours vs iperf3;
needs root and iperf3), `tls` (loopback with mutual TLS vs plain, interleaved; transfer_tls.py).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import ssl
import subprocess
import sys
import time

import uvloop

from prfaas.kvtransfer.tcp_sender import TcpSender
from prfaas.tools.benchmarks.transfer_netns import netns_child, scenario_netns
from prfaas.tools.benchmarks.transfer_overlap import scenario_overlap
from prfaas.tools.benchmarks.transfer_peer import SECRET
from prfaas.tools.benchmarks.transfer_tls import scenario_tls

MIB = 1 << 20


def _peer(
    mode: str, host: str, layers: int, nbytes: int, ns: str | None = None, repeats: int = 1
) -> tuple[subprocess.Popen, int]:
    cmd = [
        sys.executable,
        "-m",
        "prfaas.tools.benchmarks.transfer_peer",
        mode,
        host,
        str(layers),
        str(nbytes),
        str(repeats),
    ]
    if ns:
        cmd = ["ip", "netns", "exec", ns, *cmd]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    return proc, int(line.split()[1])


def baseline_sendall(
    host: str, total: int, ns: str | None = None, src_host: str | None = None
) -> float:
    """Bytes/s of one blocking socket sendall of `total` bytes (ack'd by the receiver)."""
    proc, port = _peer("raw", host, 1, total, ns)
    buf = bytearray(os.urandom(MIB)) * (total // MIB)
    t0 = time.perf_counter()
    with socket.create_connection((host, port)) as s:
        s.sendall(buf)
        s.recv(1)
    dt = time.perf_counter() - t0
    proc.wait(30)
    return total / dt


async def ours(
    host: str,
    port: int,
    layers: int,
    nbytes: int,
    conns: int,
    chunk_mib: float,
    ssl_context: ssl.SSLContext | None = None,
) -> dict[str, float]:
    tx = TcpSender(
        secret=SECRET, num_connections=conns, chunk_mib=chunk_mib, ssl_context=ssl_context
    )
    src = [bytearray(os.urandom(min(nbytes, MIB))) * max(1, nbytes // MIB) for _ in range(layers)]
    layout = [[("kv", "u8", len(s))] for s in src]
    t0 = time.perf_counter()
    handle = tx.open((host, port), "bench", layout)
    for i, buf in enumerate(src):
        handle.add(i, [memoryview(buf)])
    handle.finish(b"")
    await handle.wait_done()
    t1 = time.perf_counter()
    await tx.close()
    return {"bytes_per_s": sum(map(len, src)) / (t1 - t0)}


def run_ours(
    host: str, layers: int, nbytes: int, conns: int, chunk_mib: float, ns: str | None = None
) -> dict:
    proc, port = _peer("kv", host, layers, nbytes, ns)
    out = uvloop.run(ours(host, port, layers, nbytes, conns, chunk_mib))
    proc.wait(60)
    return out


def scenario_loopback(a: argparse.Namespace) -> dict:
    """Ours vs one blocking sendall socket, `--loopback-trials` interleaved trials (kv_line.py):
    goodput and each process's CPU seconds per GiB (sender and receiver), median [min, max], the
    ratios of the medians, and the sender cores a 10/25/50/100 Gbit/s line needs at that CPU/GiB."""
    from prfaas.tools.benchmarks import kv_line  # torch: loaded only for this scenario

    layers, elements = 8, 512  # float32 rows of 2 KiB, 8 layers
    tokens = max(1, a.loopback_mib * MIB // (layers * elements * 4))
    ns = argparse.Namespace(trials=a.loopback_trials, layers=layers, tokens=tokens,
                            elements=elements, connections=a.connections, chunk_mib=a.chunk_mib,
                            modes="sendall,none")  # fmt: skip
    out = uvloop.run(kv_line.run(ns))
    out["ours"] = out.pop("none")
    return out


def scenario_relay(a: argparse.Namespace) -> dict:
    out = {}
    for conns in (1, 4):
        peer, rport = _peer("kv", "127.0.0.1", 16, 4 * MIB)
        relay = subprocess.Popen(
            [sys.executable, "-m", "prfaas.cli", "link", "--listen", "127.0.0.1:0", "--target", f"127.0.0.1:{rport}",
             "--delay-ms", "20", "--rate-mbit", str(a.relay_rate_mbit), "--window-kib", "1024"],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert relay.stdout is not None
            lport = int(relay.stdout.readline().split()[1])
            res = uvloop.run(ours("127.0.0.1", lport, 16, 4 * MIB, conns, a.chunk_mib))
            peer.wait(60)
        finally:
            relay.kill()
            peer.kill()
            relay.wait()
        out[f"{conns}conn_MBps"] = res["bytes_per_s"] / 1e6
    out["speedup_4_vs_1"] = out["4conn_MBps"] / out["1conn_MBps"]
    return out


SCENARIOS = {
    "loopback": scenario_loopback,
    "relay": scenario_relay,
    "overlap": scenario_overlap,
    "netns": scenario_netns,
    "tls": scenario_tls,
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    parser.add_argument(
        "--scenario", action="append", help="loopback, relay, overlap, netns, tls (default: all)"
    )
    parser.add_argument("--tls-rounds", type=int, default=5, help="tls: plain/TLS round pairs")
    parser.add_argument("--loopback-mib", type=int, default=256, help="loopback: MiB per trial")
    parser.add_argument("--loopback-trials", type=int, default=9, help="loopback: timed trials")
    parser.add_argument("--netns-mib", type=int, default=1024, help="netns: MiB at 10 Gbit/s")
    parser.add_argument("--netns-rounds", type=int, default=3)
    parser.add_argument(
        "--netns-prefix", default="pxb", help="netns: namespaces <prefix>-a and <prefix>-b"
    )
    parser.add_argument("--overlap-trials", type=int, default=7)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--chunk-mib", type=float, default=4.0)
    parser.add_argument(
        "--layer-ms", type=float, default=20.0, help="overlap: one layer every X ms"
    )
    parser.add_argument("--relay-rate-mbit", type=float, default=2000.0)


def run(args: argparse.Namespace) -> int:
    if args.scenario in (["_netns_ours"], ["_netns_sendall"]):
        print(json.dumps(netns_child(args)))
        return 0
    results = {name: SCENARIOS[name](args) for name in (args.scenario or list(SCENARIOS))}
    print(json.dumps(results) if args.json else json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    add_arguments(p)
    sys.exit(run(p.parse_args()))
