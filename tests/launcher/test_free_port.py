"""Ports handed to child processes lie below the kernel's ephemeral range, so no outgoing
connection can take one between the choice and the child's bind, and none is handed out twice."""

from __future__ import annotations

import socket

from prfaas.launcher import probes
from prfaas.launcher.probes import free_port, free_port_range


def test_ports_lie_below_the_ephemeral_range_and_are_not_repeated() -> None:
    low, _ = probes.ephemeral_port_range()
    ports = [free_port() for _ in range(50)]
    assert all(20000 <= p < low for p in ports)
    assert len(set(ports)) == len(ports)


def test_a_range_is_free_and_disjoint_from_ports_already_handed_out() -> None:
    single = free_port()
    base = free_port_range(8)
    assert single not in range(base, base + 8)
    for port in range(base, base + 8):
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))  # raises if taken


def test_a_taken_port_is_never_chosen(monkeypatch) -> None:  # noqa: ANN001
    held = socket.socket()
    held.bind(("127.0.0.1", free_port()))
    taken = held.getsockname()[1]
    spare = free_port()
    probes._handed_out.difference_update({taken, spare})
    offered = iter([taken, taken, spare])  # the chooser offers the taken port first

    class Chooser:
        @staticmethod
        def choice(options: range) -> int:
            return next(offered)

    monkeypatch.setattr(probes, "random", Chooser)
    try:
        assert free_port() == spare
    finally:
        held.close()
