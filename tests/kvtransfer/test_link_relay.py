"""The link relay: delay, rate cap, cut and stall, and KV transfers through it."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from prfaas.kvtransfer.base import PeerLost, TransferError
from prfaas.kvtransfer.tcp_receiver import TcpReceiver
from prfaas.kvtransfer.tcp_sender import TcpSender
from prfaas.link.relay import LinkRelay
from tests.kvtransfer.conftest import SECRET, make_layers


async def echo_server() -> asyncio.Server:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(1 << 16):
                writer.write(data)
                await writer.drain()
        writer.close()

    return await asyncio.start_server(echo, "127.0.0.1", 0)


async def test_delay_adds_round_trip_time_and_rate_caps_throughput() -> None:
    server = await echo_server()
    relay = await LinkRelay(server.sockets[0].getsockname()[:2], delay_s=0.05).start()
    reader, writer = await asyncio.open_connection(*relay.address)
    t0 = time.monotonic()
    writer.write(b"ping")
    assert await reader.readexactly(4) == b"ping"
    assert time.monotonic() - t0 >= 0.1  # 50 ms each way
    relay.set_delay(0.0)
    relay.set_rate(2e6)  # 2 MB/s, burst 256 KiB
    payload = b"x" * (1 << 20)
    t0 = time.monotonic()
    writer.write(payload)
    await reader.readexactly(len(payload))
    assert time.monotonic() - t0 >= 0.3  # (1 MiB - burst) / 2 MB/s, on the way out alone
    writer.close()
    await relay.close()
    server.close()
    await server.wait_closed()


async def test_control_port_commands() -> None:
    server = await echo_server()
    relay = await LinkRelay(server.sockets[0].getsockname()[:2]).start(control=("127.0.0.1", 0))
    reader, writer = await asyncio.open_connection(*relay.control_address)
    for cmd, want in [
        ("rate 1000000", "ok"),
        ("delay 20 5", "ok"),
        ("stall off", "ok"),
        ("bogus", "error"),
    ]:
        writer.write(cmd.encode() + b"\n")
        assert (await reader.readline()).decode().startswith(want)
    writer.write(b"stats\n")
    assert '"delay_s": 0.02' in (await reader.readline()).decode()
    writer.close()
    await relay.close()
    server.close()


@pytest.fixture
async def kv_through_relay():
    rx = await TcpReceiver(secret=SECRET).start()
    relay = await LinkRelay(rx.address, delay_s=0.005).start()
    tx = TcpSender(secret=SECRET, num_connections=2, chunk_mib=1 / 64)
    yield rx, relay, tx
    await tx.close()
    await relay.close()
    await rx.close()


async def test_transfer_through_relay_and_cut_fails_both_sides(kv_through_relay) -> None:
    rx_side, relay, tx_side = kv_through_relay
    layout, src = make_layers(2, 50_000)
    dst = [bytearray(50_000) for _ in src]
    rx = rx_side.expect("ok", layout, [[memoryview(d)] for d in dst], 10)
    tx = tx_side.open(relay.address, "ok", layout)
    for i, buf in enumerate(src):
        tx.add(i, [memoryview(buf)])
    tx.finish(b"t")
    assert await rx.wait_done() == b"t"
    await tx.wait_done()
    assert dst == src
    # The same (reused) connections, then the link is cut mid-transfer.
    rx2 = rx_side.expect("cut", layout, [[memoryview(bytearray(50_000))] for _ in src], 10)
    tx2 = tx_side.open(relay.address, "cut", layout)
    tx2.add(0, [memoryview(src[0])])
    await rx2.wait_layer(0)
    relay.cut()
    with pytest.raises(PeerLost):
        await asyncio.wait_for(tx2.wait_done(), 3)
    with pytest.raises(PeerLost):
        await asyncio.wait_for(rx2.wait_done(), 3)
    assert not any(tx_side.leak_check().values())


async def test_stalled_link_hits_the_receiver_deadline(kv_through_relay) -> None:
    rx_side, relay, tx_side = kv_through_relay
    layout, src = make_layers(1, 50_000)
    rx = rx_side.expect("stall", layout, [[memoryview(bytearray(50_000))]], 0.5)
    relay.stall(True)
    tx = tx_side.open(relay.address, "stall", layout)
    tx.add(0, [memoryview(src[0])])
    tx.finish()
    with pytest.raises(TransferError):
        await asyncio.wait_for(rx.wait_done(), 3)
    assert rx.dest is None
    relay.stall(False)
    with pytest.raises(TransferError):
        await asyncio.wait_for(tx.wait_done(), 3)
