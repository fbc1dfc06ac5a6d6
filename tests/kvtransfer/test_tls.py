"""Optional TLS: negotiated by the HELLO flag, verified certificate, byte-exact transfer, refusals."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

from prfaas.kvtransfer.base import TransferRefused
from prfaas.kvtransfer.tcp_receiver import TcpReceiver
from prfaas.kvtransfer.tcp_sender import TcpSender
from tests.kvtransfer.conftest import SECRET, make_layers

N = 300_000


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made with the openssl CLI."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not available to generate a self-signed certificate")
    d = tmp_path_factory.mktemp("tls")
    crt, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(crt), "-subj", "/CN=prfaas-test",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True,
    )  # fmt: skip
    return crt, key


def contexts(cert: tuple[Path, Path]) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    crt, key = cert
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(crt, key)
    client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(crt))
    return server, client


def start(tx: TcpSender, rx: TcpReceiver, tid: str, nbytes: int):  # type: ignore[no-untyped-def]
    """Expect and open a one-layer transfer and add its bytes; returns (send, receive, dst, src)."""
    layout, src = make_layers(1, nbytes)
    dst = bytearray(nbytes)
    rh = rx.expect(tid, layout, [[memoryview(dst)]], 10)
    sh = tx.open(rx.address, tid, layout)
    sh.add(0, [memoryview(src[0])])
    return sh, rh, dst, src[0]


def assert_no_leaks(*sides: TcpSender | TcpReceiver) -> None:
    for side in sides:
        leaked = {k: v for k, v in side.leak_check().items() if k != "connections" and v}
        assert not leaked, f"{type(side).__name__} leaked {leaked}"


async def test_tls_transfer_is_byte_exact(cert: tuple[Path, Path]) -> None:
    server_ctx, client_ctx = contexts(cert)
    rx = await TcpReceiver(secret=SECRET, ssl_context=server_ctx).start()
    tx = TcpSender(secret=SECRET, num_connections=2, chunk_mib=1 / 16, ssl_context=client_ctx)
    try:
        layout, src = make_layers(3, N)
        dst = [bytearray(N) for _ in src]
        rh = rx.expect("tls", layout, [[memoryview(d)] for d in dst], 10)
        sh = tx.open(rx.address, "tls", layout, b"meta")
        for i, buf in enumerate(src):
            sh.add(i, [memoryview(buf)])
        sh.finish(b"trailer")
        await asyncio.wait_for(sh.wait_done(), 10)
        assert await rh.wait_done() == b"trailer"
        assert dst == src
        snap = tx.snapshot()[0]
        assert snap.connections == 2
    finally:
        await tx.close()
        await rx.close()
    assert_no_leaks(tx, rx)


@pytest.mark.parametrize(
    "case", ["untrusted certificate", "receiver requires TLS", "receiver has no TLS"]
)
async def test_tls_failures_fail_the_transfer(cert: tuple[Path, Path], case: str) -> None:
    server_ctx, client_ctx = contexts(cert)
    rx_ctx, tx_ctx, error, reason = {
        "untrusted certificate": (
            server_ctx, ssl.create_default_context(), Exception, "CERTIFICATE_VERIFY_FAILED"
        ),
        "receiver requires TLS": (server_ctx, None, TransferRefused, "TLS required"),
        "receiver has no TLS": (None, client_ctx, TransferRefused, "TLS not offered"),
    }[case]  # fmt: skip
    rx = await TcpReceiver(secret=SECRET, ssl_context=rx_ctx).start()
    tx = TcpSender(secret=SECRET, num_connections=2, ssl_context=tx_ctx)
    try:
        sh, rh, _, _ = start(tx, rx, "m", N)
        with pytest.raises(error, match=reason):
            await asyncio.wait_for(sh.wait_done(), 10)
        rh.abort("test over")
    finally:
        await tx.close()
        await rx.close()
    assert_no_leaks(tx, rx)


async def test_tls_optional_receiver_accepts_plain_senders(cert: tuple[Path, Path]) -> None:
    server_ctx, client_ctx = contexts(cert)
    rx = await TcpReceiver(secret=SECRET, ssl_context=server_ctx, require_tls=False).start()
    plain = TcpSender(secret=SECRET, num_connections=1)
    secure = TcpSender(secret=SECRET, num_connections=1, ssl_context=client_ctx)
    try:
        for tid, tx in (("plain", plain), ("secure", secure)):
            sh, rh, dst, src = start(tx, rx, tid, 5000)
            sh.finish()
            await asyncio.wait_for(sh.wait_done(), 10)
            await rh.wait_done()
            assert dst == src
    finally:
        await plain.close()
        await secure.close()
        await rx.close()
    assert_no_leaks(plain, secure, rx)
