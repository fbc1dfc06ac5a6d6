"""`prfaas bench transfer`: KV transfer goodput and overlap, each figure against a baseline of the
same run. The receiving side always runs in a separate process (`bench_peer`).

Scenarios: `loopback` (ours vs single-socket sendall), `relay` (20 ms one-way delay through
`prfaas link`: 1 vs 4 connections), `overlap` (one layer every X ms: exposed time after the last
layer vs one layer's ship time), `netns` (veth shaped with tbf to 1 and 10 Gbit/s: ours vs iperf3;
needs root and iperf3).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import time

import uvloop

from prfaas.kvtransfer.bench_peer import SECRET
from prfaas.kvtransfer.tcp_sender import TcpSender

MIB = 1 << 20
NETNS = os.path.join(os.path.dirname(__file__), "..", "..", "deploy", "netns")


def _peer(
    mode: str, host: str, layers: int, nbytes: int, ns: str | None = None
) -> tuple[subprocess.Popen, int]:
    cmd = [
        sys.executable,
        "-m",
        "prfaas.kvtransfer.bench_peer",
        mode,
        host,
        str(layers),
        str(nbytes),
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
    every_s: float = 0.0,
) -> dict[str, float]:
    tx = TcpSender(secret=SECRET, num_connections=conns, chunk_mib=chunk_mib)
    src = [bytearray(os.urandom(min(nbytes, MIB))) * max(1, nbytes // MIB) for _ in range(layers)]
    layout = [[("kv", "u8", len(s))] for s in src]
    warm_s = 0.0
    if every_s:
        for tid in ("warm0", "warm1"):
            t0 = time.perf_counter()
            warm = tx.open((host, port), tid, layout[:1])
            warm.add(0, [memoryview(src[0])])
            warm.finish(b"")
            await warm.wait_done()
            warm_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    handle = tx.open((host, port), "bench", layout)
    for i, buf in enumerate(src):
        if every_s:
            await asyncio.sleep(every_s)
        handle.add(i, [memoryview(buf)])
    t_last = time.perf_counter()
    handle.finish(b"")
    await handle.wait_done()
    t1 = time.perf_counter()
    await tx.close()
    return {
        "bytes_per_s": sum(map(len, src)) / (t1 - t0),
        "exposed_s": t1 - t_last,
        "layer_ship_s": warm_s,
    }


def run_ours(
    host: str, layers: int, nbytes: int, conns: int, chunk_mib: float, ns: str | None = None, **kw
) -> dict:
    proc, port = _peer("kv", host, layers, nbytes, ns)
    out = uvloop.run(ours(host, port, layers, nbytes, conns, chunk_mib, **kw))
    proc.wait(60)
    return out


def scenario_loopback(a: argparse.Namespace) -> dict:
    total = a.loopback_mib * MIB
    base = baseline_sendall("127.0.0.1", total)
    mine = run_ours("127.0.0.1", 32, total // 32, a.connections, a.chunk_mib)["bytes_per_s"]
    return {"baseline_GBps": base / 1e9, "ours_GBps": mine / 1e9, "ratio": mine / base}


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


def scenario_overlap(a: argparse.Namespace) -> dict:
    layers, nbytes = 32, 4 * MIB
    res = run_ours(
        "127.0.0.1", layers, nbytes, a.connections, a.chunk_mib, every_s=a.layer_ms / 1e3
    )
    layer_ship_s = res["layer_ship_s"]
    return {
        "layer_ship_ms": layer_ship_s * 1e3,
        "exposed_ms": res["exposed_s"] * 1e3,
        "ratio": res["exposed_s"] / layer_ship_s,
    }


def _iperf(ns_a: str, ns_b: str) -> float:
    srv = subprocess.Popen(
        ["ip", "netns", "exec", ns_b, "iperf3", "-s", "-1"], stdout=subprocess.DEVNULL
    )
    time.sleep(0.5)
    out = subprocess.run(
        ["ip", "netns", "exec", ns_a, "iperf3", "-c", "10.77.0.2", "-t", "4", "-J"],
        capture_output=True,
        text=True,
        check=True,
    )
    srv.wait(10)
    return json.loads(out.stdout)["end"]["sum_received"]["bits_per_second"] / 8


def scenario_netns(a: argparse.Namespace) -> dict:
    if os.geteuid() != 0 or not shutil.which("iperf3"):
        return {"skipped": "needs root and iperf3"}
    env = {**os.environ, "PRFAAS_NS_PREFIX": "pxb"}
    out = {}
    try:
        for rate, mib in (("1gbit", 256), ("10gbit", 1024)):
            subprocess.run([f"{NETNS}/setup.sh", rate], env=env, check=True, capture_output=True)
            ip = _iperf("pxb-a", "pxb-b")
            # The sender runs in namespace a via a child process of this module.
            cmd = [
                "ip",
                "netns",
                "exec",
                "pxb-a",
                sys.executable,
                "-m",
                "prfaas.kvtransfer.bench",
                "--scenario",
                "_netns_sender",
                "--netns-mib",
                str(mib),
                "--connections",
                str(a.connections),
                "--chunk-mib",
                str(a.chunk_mib),
            ]
            mine = json.loads(
                subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            )["bytes_per_s"]
            out[rate] = {"iperf3_MBps": ip / 1e6, "ours_MBps": mine / 1e6, "ratio": mine / ip}
    finally:
        subprocess.run([f"{NETNS}/teardown.sh"], env=env, check=False)
    return out


def _netns_sender(a: argparse.Namespace) -> dict:
    return run_ours(
        "10.77.0.2", 32, a.netns_mib * MIB // 32, a.connections, a.chunk_mib, ns="pxb-b"
    )


SCENARIOS = {
    "loopback": scenario_loopback,
    "relay": scenario_relay,
    "overlap": scenario_overlap,
    "netns": scenario_netns,
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    parser.add_argument(
        "--scenario", action="append", help="loopback, relay, overlap, netns (default: all)"
    )
    parser.add_argument("--loopback-mib", type=int, default=256)
    parser.add_argument("--netns-mib", type=int, default=256)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--chunk-mib", type=float, default=1.0)
    parser.add_argument(
        "--layer-ms", type=float, default=20.0, help="overlap: one layer every X ms"
    )
    parser.add_argument("--relay-rate-mbit", type=float, default=2000.0)


def run(args: argparse.Namespace) -> int:
    if args.scenario == ["_netns_sender"]:
        print(json.dumps(_netns_sender(args)))
        return 0
    results = {name: SCENARIOS[name](args) for name in (args.scenario or list(SCENARIOS))}
    print(json.dumps(results) if args.json else json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    add_arguments(p)
    sys.exit(run(p.parse_args()))
