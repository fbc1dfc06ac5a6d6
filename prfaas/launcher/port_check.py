"""Ports a deployment will listen on, checked before any process starts.

A busy port used to surface only after the workers had started (tens of seconds), as a log tail of
the process that failed to bind. `busy_ports` tries to bind each address the way the children do
and names, from /proc, the process that holds a taken one (Linux; elsewhere the holder is unknown).
The launcher owns this module.
"""

from __future__ import annotations

import errno
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from prfaas.launcher.probes import ephemeral_port_range


@dataclass(frozen=True)
class Listener:
    """One address a child process of the deployment will bind."""

    process: str
    purpose: str
    host: str
    port: int


@dataclass(frozen=True)
class BusyPort:
    listener: Listener
    holder: str | None
    """'pid 123 (python -m ...)' when /proc shows who holds the port."""

    def message(self) -> str:
        who = f", held by {self.holder}" if self.holder else ""
        lst = self.listener
        return f"port {lst.port} ({lst.process} {lst.purpose} on {lst.host}) is in use{who}"


def _bindable(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # As servers bind (SO_REUSEADDR): a port left in TIME_WAIT is free for them too.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            # Only "in use" is ours to report; an address this host lacks (a compose service
            # name, another machine) is the child's to fail on.
            return exc.errno != errno.EADDRINUSE
    return True


def _listening_inodes(port: int) -> set[str]:
    """Socket inodes listening on `port` (state 0A) in /proc/net/tcp{,6}."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if (
                len(fields) > 9
                and fields[3] == "0A"
                and int(fields[1].rsplit(":", 1)[1], 16) == port
            ):
                inodes.add(fields[9])
    return inodes


def port_holder(port: int) -> str | None:
    """'pid N (command line)' of a process listening on `port`, when /proc lets us see it."""
    inodes = _listening_inodes(port)
    if not inodes:
        return None
    targets = {f"socket:[{inode}]" for inode in inodes}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            if not any(os.readlink(f"/proc/{pid}/fd/{fd}") in targets for fd in fds):
                continue
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:
            continue
        return f"pid {pid} ({cmd[:80]})"
    return None


def busy_ports(listeners: list[Listener]) -> list[BusyPort]:
    """The listeners whose address cannot be bound now, each with its holder when known."""
    return [
        BusyPort(lst, port_holder(lst.port))
        for lst in listeners
        if lst.port and not _bindable(lst.host, lst.port)
    ]


def ephemeral_listeners(listeners: list[Listener]) -> list[Listener]:
    """The listeners whose port lies in the kernel's ephemeral range: an outgoing connection
    anywhere on the host may take such a port between this check and the child's bind (seen as
    EADDRINUSE in `prfaas experiment --port-base 49000`), so a base below the range is safer."""
    low, high = ephemeral_port_range()
    return [lst for lst in listeners if low <= lst.port <= high]
