"""`prfaas link`: a userspace TCP relay emulating a cross-datacenter link (no netem needed).

Per direction of each relayed connection a reader stamps every read (<= `read_bytes`) with
`release = now + delay (+ uniform jitter)` and queues it; a writer releases it at that time through
a token bucket shared by all connections of the relay (rate cap, `burst_bytes`), and with
`--shared-link FILE` by every relay given that file (prfaas/link/token_bucket.py). Reading never
waits for the delay, so delay does not cap throughput; a per-connection queue limit
(`window_bytes`) plays the role of a TCP window: one connection carries at most window/delay.

Run-time control (Python API or a line-based control port): `rate <bytes/s|off>`,
`delay <ms> [jitter_ms]`, `stall on|off` (hold all traffic), `cut` (reset every connection),
`down` / `up` (cut and refuse new connections), `stats`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import socket
import time
from collections import deque
from pathlib import Path

from prfaas.link.token_bucket import buckets
from prfaas.log_setup import add_logging_arguments, configure_logging

_EOF = b""


class LinkRelay:
    def __init__(
        self,
        target: tuple[str, int],
        listen: tuple[str, int] = ("127.0.0.1", 0),
        *,
        delay_s: float = 0.0,
        jitter_s: float = 0.0,
        rate_bytes_per_s: float | None = None,
        burst_bytes: int = 256 << 10,
        window_bytes: int = 4 << 20,
        read_bytes: int = 64 << 10,
        shared_link: str | Path | None = None,
        rcvbuf_bytes: int | None = None,
    ) -> None:
        self.target, self.listen = target, listen
        self.delay_s, self.jitter_s = delay_s, jitter_s
        self.window_bytes, self.read_bytes = window_bytes, read_bytes
        # The kernel's receive buffer of accepted connections (None: autotuned, up to megabytes
        # that the sender reads as sent; a path's bottleneck holds far less).
        self.rcvbuf_bytes = rcvbuf_bytes
        # With `shared_link`, every relay given that file draws on one rate cap (token_bucket.py).
        self.buckets = buckets(rate_bytes_per_s, burst_bytes, shared_link)
        self.down = False
        self.bytes_relayed = 0
        self._running = asyncio.Event()
        self._running.set()
        self._server: asyncio.Server | None = None
        self._control: asyncio.Server | None = None
        self._conns: set[asyncio.Task[None]] = set()

    @property
    def address(self) -> tuple[str, int]:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[:2]

    async def start(self, control: tuple[str, int] | None = None) -> LinkRelay:
        self._server = await asyncio.start_server(self._accept, *self.listen)
        if self.rcvbuf_bytes is not None:  # accepted connections inherit it
            for sock in self._server.sockets:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf_bytes)
        if control is not None:
            self._control = await asyncio.start_server(self._control_client, *control)
        return self

    @property
    def control_address(self) -> tuple[str, int] | None:
        return self._control.sockets[0].getsockname()[:2] if self._control else None

    def set_rate(self, rate_bytes_per_s: float | None) -> None:
        for bucket in self.buckets.values():
            bucket.rate = rate_bytes_per_s

    def set_delay(self, delay_s: float, jitter_s: float = 0.0) -> None:
        self.delay_s, self.jitter_s = delay_s, jitter_s

    def stall(self, on: bool) -> None:
        """Hold every byte in flight (connections stay open) until stall(False)."""
        if on:
            self._running.clear()
        else:
            self._running.set()

    def cut(self) -> None:
        """Reset every relayed connection (both ends see the connection drop)."""
        for task in list(self._conns):
            task.cancel()

    def set_down(self, down: bool) -> None:
        self.down = down
        if down:
            self.cut()

    async def close(self) -> None:
        for server in (self._server, self._control):
            if server is not None:
                server.close()
        self.cut()
        await asyncio.gather(*self._conns, return_exceptions=True)

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.down:
            writer.transport.abort()
            return
        task = asyncio.create_task(self._relay(reader, writer))
        self._conns.add(task)
        task.add_done_callback(self._conns.discard)

    async def _relay(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        try:
            t_reader, t_writer = await asyncio.open_connection(*self.target)
        except OSError:
            c_writer.transport.abort()
            return
        try:
            await asyncio.gather(
                self._pipe(c_reader, t_writer, "up"), self._pipe(t_reader, c_writer, "down")
            )
        finally:
            # Abort (RST) rather than close, so a cut looks like a broken link to both ends.
            c_writer.transport.abort()
            t_writer.transport.abort()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, direction: str
    ) -> None:
        queue: deque[tuple[float, bytes]] = deque()
        queued = [0]
        space, ready = asyncio.Event(), asyncio.Event()
        space.set()

        async def read() -> None:
            last = 0.0
            while True:
                data = await reader.read(self.read_bytes)
                jitter = random.uniform(0, self.jitter_s) if self.jitter_s else 0.0
                last = max(last, time.monotonic() + self.delay_s + jitter)
                queue.append((last, data))
                ready.set()
                if data == _EOF:
                    return
                queued[0] += len(data)
                if queued[0] >= self.window_bytes:
                    space.clear()
                    await space.wait()

        async def write() -> None:
            bucket = self.buckets[direction]
            while True:
                while not queue:
                    ready.clear()
                    await ready.wait()
                release, data = queue.popleft()
                await asyncio.sleep(max(0.0, release - time.monotonic()))
                await self._running.wait()
                if data == _EOF:
                    writer.write_eof()
                    return
                await asyncio.sleep(bucket.reserve(len(data)))
                writer.write(data)
                await writer.drain()
                self.bytes_relayed += len(data)
                queued[0] -= len(data)
                if queued[0] < self.window_bytes:
                    space.set()

        reader_task = asyncio.create_task(read())
        try:
            await write()
            await reader_task
        finally:
            reader_task.cancel()

    async def _control_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        with contextlib.suppress(ConnectionError):
            while line := await reader.readline():
                writer.write((self.command(line.decode().strip()) + "\n").encode())
                await writer.drain()
        writer.close()

    def command(self, line: str) -> str:
        """Apply one control-port command; returns 'ok', a JSON stats line or 'error: ...'."""
        words = line.split()
        try:
            if words[0] == "rate":
                self.set_rate(None if words[1] == "off" else float(words[1]))
            elif words[0] == "delay":
                self.set_delay(
                    float(words[1]) / 1e3, float(words[2]) / 1e3 if len(words) > 2 else 0.0
                )
            elif words[0] == "stall":
                self.stall(words[1] == "on")
            elif words[0] == "cut":
                self.cut()
            elif words[0] in ("down", "up"):
                self.set_down(words[0] == "down")
            elif words[0] == "stats":
                return json.dumps(
                    {
                        "connections": len(self._conns),
                        "bytes_relayed": self.bytes_relayed,
                        "delay_s": self.delay_s,
                        "rate_bytes_per_s": self.buckets["up"].rate,
                        "down": self.down,
                        "stalled": not self._running.is_set(),
                    }
                )
            else:
                return f"error: unknown command {words[0]!r}"
        except (IndexError, ValueError) as exc:
            return f"error: {exc}"
        return "ok"


def _hostport(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host or "127.0.0.1", int(port)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_logging_arguments(parser)
    parser.add_argument("--listen", type=_hostport, required=True, help="HOST:PORT to accept on")
    parser.add_argument("--target", type=_hostport, required=True, help="HOST:PORT to relay to")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="one-way delay per direction")
    parser.add_argument("--jitter-ms", type=float, default=0.0, help="extra uniform delay 0..J ms")
    parser.add_argument(
        "--rate-mbit", type=float, default=0.0, help="rate cap per direction (0: none)"
    )
    parser.add_argument(
        "--shared-link",
        help="a file naming one link: relays given the same file share one rate cap (the "
        "launcher's relays in front of each PD worker are one cross-datacenter link)",
    )
    parser.add_argument("--window-kib", type=int, default=4096, help="bytes queued per connection")
    parser.add_argument(
        "--control", type=_hostport, default=None, help="HOST:PORT of the control port"
    )
    parser.add_argument("--metrics-port", type=int, default=0, help="Prometheus port (0: off)")


async def _export_metrics(
    relay: LinkRelay, args: argparse.Namespace, period_s: float = 1.0
) -> None:
    """Serve the relay's state on /metrics (prfaas.metrics.RelayMetrics), refreshed every period."""
    from prometheus_client import CollectorRegistry

    from prfaas.metrics import RelayMetrics, RelayStats, serve

    registry = CollectorRegistry()
    link = f"{args.listen[0]}:{args.listen[1]}->{args.target[0]}:{args.target[1]}"
    metrics = RelayMetrics(registry, link)
    serve(registry, args.metrics_port, args.listen[0])
    while True:
        metrics.record(
            RelayStats(
                relay.bytes_relayed,
                len(relay._conns),
                relay.buckets["up"].rate or 0.0,
                relay.delay_s,
                not relay.down and relay._running.is_set(),
            )
        )
        await asyncio.sleep(period_s)


def run(args: argparse.Namespace) -> int:
    configure_logging(args)

    async def main() -> None:
        relay = LinkRelay(
            args.target,
            args.listen,
            delay_s=args.delay_ms / 1e3,
            jitter_s=args.jitter_ms / 1e3,
            rate_bytes_per_s=args.rate_mbit * 1e6 / 8 or None,
            window_bytes=args.window_kib << 10,
            shared_link=args.shared_link,
        )
        await relay.start(args.control)
        if args.metrics_port:
            asyncio.get_running_loop().create_task(_export_metrics(relay, args))
        # First line is machine-readable: the bound listen port, then the control port (or 0).
        ctl = relay.control_address[1] if relay.control_address else 0
        target = f"{args.target[0]}:{args.target[1]}"
        print(f"LISTEN {relay.address[1]} CONTROL {ctl} -> {target}", flush=True)
        await asyncio.Event().wait()

    import uvloop

    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(main())
    return 0
