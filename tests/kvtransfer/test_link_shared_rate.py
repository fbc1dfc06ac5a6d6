"""Relays given one `--shared-link` file are one link: their traffic together stays under one rate
cap (the launcher's relays in front of each PD worker emulate a single cross-datacenter link)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from pathlib import Path

from prfaas.launcher import deployment as launcher_deployment
from prfaas.link import relay as relay_cli
from prfaas.link.relay import LinkRelay
from prfaas.link.token_bucket import FileTimeline, TokenBucket

RATE = 2e6  # bytes/s
PAYLOAD = 1 << 20


async def sink_server(received: list[int]) -> asyncio.Server:
    async def sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(1 << 16):
                received.append(len(data))
        writer.close()

    return await asyncio.start_server(sink, "127.0.0.1", 0)


async def _send_through_both(shared: Path | None) -> float:
    """Seconds to push PAYLOAD through each of two relays at once (both capped at RATE)."""
    received: list[int] = []
    servers = [await sink_server(received) for _ in range(2)]
    relays = [
        await LinkRelay(
            s.sockets[0].getsockname()[:2], rate_bytes_per_s=RATE, shared_link=shared
        ).start()  # fmt: skip
        for s in servers
    ]

    async def push(relay: LinkRelay) -> None:
        _, writer = await asyncio.open_connection(*relay.address)
        writer.write(b"x" * PAYLOAD)
        await writer.drain()
        writer.write_eof()

    t0 = time.monotonic()
    await asyncio.gather(*(push(r) for r in relays))
    while sum(received) < 2 * PAYLOAD:
        await asyncio.sleep(0.005)
    elapsed = time.monotonic() - t0
    for r in relays:
        await r.close()
    for s in servers:
        s.close()
    return elapsed


async def test_two_relays_on_one_shared_link_carry_one_rate(tmp_path: Path) -> None:
    # 2 MiB at 2 MB/s less one 256 KiB burst: >= 0.92 s on one link; private buckets would let
    # each relay carry its own 1 MiB at 2 MB/s (~0.4 s).
    elapsed = await _send_through_both(tmp_path / "link.timeline")
    assert elapsed >= (2 * PAYLOAD - (256 << 10)) / RATE * 0.95, elapsed


async def test_private_buckets_each_carry_the_full_rate() -> None:
    # The baseline the shared file changes: without it the two relays add up to twice the rate.
    elapsed = await _send_through_both(None)
    assert elapsed < (2 * PAYLOAD - (256 << 10)) / RATE * 0.95, elapsed


def test_file_timeline_is_one_clock_for_every_opener(tmp_path: Path) -> None:
    path = tmp_path / "t"
    a = TokenBucket(1e6, 0, FileTimeline(path, 0))
    b = TokenBucket(1e6, 0, FileTimeline(path, 0))
    other_direction = TokenBucket(1e6, 0, FileTimeline(path, 1))
    assert a.reserve(500_000) > 0.45
    assert b.reserve(500_000) > 0.95  # queued behind a's half second
    assert other_direction.reserve(500_000) < 0.55  # its own slot


def test_launcher_gives_every_relay_the_same_shared_link(tmp_path: Path) -> None:
    default = launcher_deployment.Topology()  # the shipped topology's defaults
    deployment = launcher_deployment.Deployment(default, tmp_path / "t.toml", tmp_path / "logs")
    relays = deployment.specs()[0]
    assert len(relays) >= 2, "the default topology relays in front of every PD worker"
    parser = argparse.ArgumentParser()
    relay_cli.add_arguments(parser)
    shared = set()
    for spec in relays:
        argv = spec.argv[spec.argv.index("link") + 1 :]
        args = parser.parse_args(argv)
        assert args.rate_mbit > 0
        shared.add(args.shared_link)
    assert shared == {str(deployment.link_timeline)}
