"""Two datacenters in two network namespaces joined by one shaped veth pair (`prfaas up --netns`).

`NetnsLink` wraps the shipped prfaas/data/netns/{setup,teardown}.sh (deploy/netns links to them):
namespace A holds the PrfaaS cluster (10.77.0.1), namespace B the local PD cluster and the router
(10.77.0.2); every cross-datacenter byte (KV and gRPC) crosses the veth, shaped by tbf to the
topology's rate (and delayed by netem where the kernel has it; otherwise a `prfaas link` relay
inside B adds the delay). Private addresses exist only inside the namespaces: the launcher reaches
them through `NetnsForwarder`, which listens on the host's loopback and opens each outgoing socket
inside the target namespace (setns around socket()).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import socket
import subprocess
import threading

from prfaas.data import netns_script

ADDR_PRFAAS = "10.77.0.1"
ADDR_PD = "10.77.0.2"
_CLONE_NEWNET = 0x40000000


class NetnsUnavailable(RuntimeError):
    """Not root, no `ip`, or namespaces cannot be created here."""


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, _CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns failed")


def socket_in_netns(ns: str) -> socket.socket:
    """A TCP socket that lives in namespace `ns` (the calling thread returns to its own)."""
    with open("/proc/thread-self/ns/net") as home, open(f"/var/run/netns/{ns}") as target:
        _setns(target.fileno())
        try:
            return socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        finally:
            _setns(home.fileno())


class NetnsLink:
    """Create/destroy the namespace pair. Idempotent; `down()` is safe after a failed `up()`."""

    def __init__(self, prefix: str, rate_gbps: float, delay_ms: float) -> None:
        self.prefix = prefix
        self.ns_prfaas, self.ns_pd = f"{prefix}-a", f"{prefix}-b"
        self.rate = f"{max(1, round(rate_gbps * 1000))}mbit"
        self.delay_ms = delay_ms
        self.netem_delay = False

    def _run(self, script: str, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PRFAAS_NS_PREFIX": self.prefix}
        return subprocess.run(
            ["bash", str(netns_script(script)), *args],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )

    def up(self) -> None:
        if os.geteuid() != 0:
            raise NetnsUnavailable("network namespaces need root")
        result = self._run("setup.sh", self.rate, f"{self.delay_ms:g}")
        if result.returncode != 0:
            self.down()
            raise NetnsUnavailable(
                f"netns setup failed: {result.stderr.strip() or result.stdout.strip()}"
            )
        qdiscs = subprocess.run(
            ["ip", "netns", "exec", self.ns_pd, "tc", "qdisc", "show"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        self.netem_delay = self.delay_ms > 0 and "netem" in qdiscs

    def down(self) -> None:
        self._run("teardown.sh")

    def exists(self) -> bool:
        listed = subprocess.run(
            ["ip", "netns", "list"], capture_output=True, text=True, check=False
        ).stdout
        return any(
            line.split()[0] in (self.ns_prfaas, self.ns_pd) for line in listed.splitlines() if line
        )

    def prefix_for(self, ns: str) -> tuple[str, ...]:
        return ("ip", "netns", "exec", ns)


class NetnsForwarder:
    """Forward host loopback ports to (namespace, address, port) targets, in a daemon thread."""

    def __init__(self) -> None:
        self._maps: list[tuple[int, str, str, int]] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="netns-forward", daemon=True
        )
        self._servers: list[asyncio.base_events.Server] = []

    def add(self, local_port: int, ns: str, host: str, port: int) -> None:
        self._maps.append((local_port, ns, host, port))

    def start(self) -> None:
        self._thread.start()
        for local_port, ns, host, port in self._maps:
            fut = asyncio.run_coroutine_threadsafe(
                self._listen(local_port, ns, host, port), self._loop
            )
            self._servers.append(fut.result(10))

    async def _listen(
        self, local_port: int, ns: str, host: str, port: int
    ) -> asyncio.base_events.Server:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            sock = socket_in_netns(ns)
            sock.setblocking(False)
            try:
                await self._loop.sock_connect(sock, (host, port))
                up_reader, up_writer = await asyncio.open_connection(sock=sock)
            except OSError:
                sock.close()
                writer.close()
                return
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

        return await asyncio.start_server(handle, "127.0.0.1", local_port)

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        for server in self._servers:
            self._loop.call_soon_threadsafe(server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()
