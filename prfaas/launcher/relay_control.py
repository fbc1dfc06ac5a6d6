"""Client of a link relay's line-based control port (prfaas/link/relay.py): one command, one reply line.

`prfaas up` starts every relay with its control port and prints it; the chaos suite and the tests
cut, stall or take down the emulated link through here.
"""

from __future__ import annotations

import socket


def relay_command(address: str, command: str, timeout_s: float = 5.0) -> str:
    """Send one command (`cut`, `stall on|off`, `down`, `up`, `rate <B/s|off>`, `delay <ms>`,
    `stats`) to the relay's control port at host:port; returns its reply ('ok', JSON, 'error: ...')."""
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout_s) as sock:
        sock.sendall(command.encode() + b"\n")
        reply = b""
        while not reply.endswith(b"\n"):
            data = sock.recv(4096)
            if not data:
                break
            reply += data
    return reply.decode().strip()


def relay_answers(address: str) -> bool:
    """True when the relay's control port answers `stats` (its readiness probe)."""
    try:
        return relay_command(address, "stats", timeout_s=1.0).startswith("{")
    except OSError:
        return False
