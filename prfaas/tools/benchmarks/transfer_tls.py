"""`prfaas bench transfer --scenario tls`: KV goodput over loopback with TLS on vs off, in
interleaved rounds of the same run (plain, TLS, plain, TLS, ...), so both see the same load.

TLS is what `prfaas up --tls` gives workers: mutual TLS with certificates from a development CA
(made here in a temporary directory), contexts from `prfaas.security.kv_tls` (the workers' own
code), the HMAC handshake on top. Reports each mode's median bytes/s, the TLS/plain ratio of the
medians and of each round pair, and the load average before and after. The receiver runs in its
own process:

    python -m prfaas.tools.benchmarks.transfer_tls peer HOST LAYERS LAYER_BYTES [CERT KEY CA]
prints `PORT <n>`, receives transfer `bench`, exits.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import uvloop

from prfaas.kvtransfer.tcp_receiver import TcpReceiver
from prfaas.tools.benchmarks.transfer_peer import SECRET

MIB = 1 << 20
LAYERS = 32


def _context(cert_key_ca: list[str], purpose: str) -> ssl.SSLContext | None:
    from prfaas.security import kv_tls  # the workers' contexts, from the same kind of files

    cert, key, ca = cert_key_ca
    files = argparse.Namespace(kv_tls=True, tls_cert=cert, tls_key=key, tls_ca=ca)
    if purpose == "receiver":
        return kv_tls.receiver_context(files)
    return kv_tls.sender_context(files)


async def _receive(host: str, layers: int, nbytes: int, tls: list[str]) -> None:
    context = _context(tls, "receiver") if tls else None
    rx = await TcpReceiver(host, 0, secret=SECRET, rcvbuf=None, ssl_context=context).start()
    dest = [memoryview(bytearray(b"\x01") * nbytes) for _ in range(layers)]  # touched, like a cache
    handle = rx.expect("bench", [[("kv", "u8", nbytes)]] * layers, [[d] for d in dest], 600)
    print(f"PORT {rx.address[1]}", flush=True)
    await handle.wait_done()
    await asyncio.sleep(0.1)
    await rx.close()


def _one_round(total: int, conns: int, chunk_mib: float, tls: list[str]) -> float:
    """Bytes/s of one `total`-byte transfer to a fresh receiver process (TLS when `tls` names
    the sender's and receiver's files)."""
    from prfaas.tools.benchmarks.transfer import ours

    nbytes = total // LAYERS
    receiver_files = tls[3:] if tls else []
    cmd = [sys.executable, "-m", "prfaas.tools.benchmarks.transfer_tls", "peer", "127.0.0.1",
           str(LAYERS), str(nbytes), *receiver_files]  # fmt: skip
    peer = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        assert peer.stdout is not None
        port = int(peer.stdout.readline().split()[1])
        context = _context(tls[:3], "sender") if tls else None
        out = uvloop.run(ours("127.0.0.1", port, LAYERS, nbytes, conns, chunk_mib, context))
        peer.wait(60)
    finally:
        if peer.poll() is None:
            peer.kill()
            peer.wait()
    return out["bytes_per_s"]


def _identity_files(directory: Path) -> list[str]:
    """Sender (prfaas-0) cert/key/CA, then receiver (pd-0) cert/key/CA, from a fresh dev CA."""
    from prfaas.security import certs, identities

    ca = certs.new_authority()
    files = []
    for worker in ("prfaas-0", "pd-0"):
        f = certs.write_identity(ca, identities.worker(worker), directory)
        files += [str(f.cert), str(f.key), str(f.ca)]
    return files


def scenario_tls(a: argparse.Namespace) -> dict:
    total = a.loopback_mib * MIB
    load_before = os.getloadavg()
    plain, tls = [], []
    with tempfile.TemporaryDirectory(prefix="prfaas-bench-tls-") as tmp:
        files = _identity_files(Path(tmp))
        for _ in range(a.tls_rounds):
            plain.append(_one_round(total, a.connections, a.chunk_mib, []))
            tls.append(_one_round(total, a.connections, a.chunk_mib, files))
    return {
        "mib_per_round": a.loopback_mib,
        "rounds": a.tls_rounds,
        "plain_GBps_median": statistics.median(plain) / 1e9,
        "tls_GBps_median": statistics.median(tls) / 1e9,
        "tls_over_plain_median": statistics.median(tls) / statistics.median(plain),
        "tls_over_plain_per_round": [round(t / p, 3) for t, p in zip(tls, plain, strict=True)],
        "load_average_before": load_before[0],
        "load_average_after": os.getloadavg()[0],
    }


if __name__ == "__main__":
    _, role, host, n_layers, layer_bytes, *tls_files = sys.argv
    assert role == "peer"
    uvloop.run(_receive(host, int(n_layers), int(layer_bytes), tls_files))
