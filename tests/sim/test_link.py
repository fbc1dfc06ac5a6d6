"""Link model: per-connection TCP bounds (window/RTT, Mathis under loss), sharing between peers,
supply-limited sending, and scheduled cuts."""

from __future__ import annotations

import math

import pytest

from prfaas.tools.sim.clock import EventLoop
from prfaas.tools.sim.link import Link, LinkChange
from prfaas.tools.sim.tcp import MSS_BYTES, TcpParams, connection_bytes_per_s, peer_bytes_per_s


def test_window_bound_falls_as_one_over_rtt() -> None:
    near = connection_bytes_per_s(TcpParams(rtt_s=0.01, window_bytes=1e6))
    far = connection_bytes_per_s(TcpParams(rtt_s=0.10, window_bytes=1e6))
    assert near == pytest.approx(1e8) and far == pytest.approx(1e7)


def test_mathis_bound_under_loss() -> None:
    p = TcpParams(rtt_s=0.05, loss=1e-4, window_bytes=1e12)
    expected = MSS_BYTES / 0.05 * math.sqrt(1.5) / math.sqrt(1e-4)
    assert connection_bytes_per_s(p) == pytest.approx(expected)
    # 100x the loss: a tenth of the throughput.
    worse = connection_bytes_per_s(TcpParams(rtt_s=0.05, loss=1e-2, window_bytes=1e12))
    assert worse == pytest.approx(expected / 10)
    assert peer_bytes_per_s(TcpParams(rtt_s=0.05, loss=1e-4, window_bytes=1e12, connections=4)) \
        == pytest.approx(4 * expected)  # fmt: skip


def _deliver(loop: EventLoop, link: Link, peer: str, nbytes: float, done: dict) -> None:
    t = link.start(peer, nbytes, lambda: done.setdefault(peer, loop.now))
    link.supply(t, nbytes)


def test_one_transfer_is_capped_by_its_connections_not_the_line() -> None:
    loop = EventLoop()
    tcp = TcpParams(rtt_s=0.1, window_bytes=1e6, connections=2)  # 2 × 10 MB/s
    link = Link(loop, 1e9, tcp)
    done: dict = {}
    _deliver(loop, link, "a", 20e6, done)
    loop.run_until(100)
    assert done["a"] == pytest.approx(1.0 + 0.05)  # 20 MB at 20 MB/s, then one-way delay


def test_peers_share_the_line_fairly_and_reshare_when_one_finishes() -> None:
    loop = EventLoop()
    link = Link(loop, 10e6, TcpParams(rtt_s=0.0))
    done: dict = {}
    _deliver(loop, link, "a", 10e6, done)
    _deliver(loop, link, "b", 20e6, done)
    loop.run_until(100)
    # Both at 5 MB/s until a finishes at 2 s; b then has 10 MB left at 10 MB/s.
    assert done["a"] == pytest.approx(2.0) and done["b"] == pytest.approx(3.0)
    assert link.bytes_sent == pytest.approx(30e6)


def test_sending_never_runs_ahead_of_the_prefill() -> None:
    loop = EventLoop()
    link = Link(loop, 100e6, TcpParams(rtt_s=0.0))
    done: dict = {}
    t = link.start("a", 10e6, lambda: done.setdefault("a", loop.now))
    link.supply(t, 5e6)
    loop.at(3.0, link.supply, t, 5e6)  # the rest is produced at 3 s
    loop.run_until(100)
    assert done["a"] == pytest.approx(3.0 + 0.05)


def test_a_cut_slows_transfers_and_a_drop_stalls_them_until_restored() -> None:
    loop = EventLoop()
    link = Link(loop, 10e6, TcpParams(rtt_s=0.0))
    done: dict = {}
    _deliver(loop, link, "a", 30e6, done)
    loop.at(1.0, link.apply, LinkChange(1.0, 0.5))  # 10 MB sent, then 5 MB/s
    loop.at(3.0, link.apply, LinkChange(3.0, 0.0))  # 20 MB sent, line down
    loop.at(10.0, link.apply, LinkChange(10.0, 1.0))  # 10 MB left at 10 MB/s
    loop.run_until(100)
    assert done["a"] == pytest.approx(11.0)


def test_a_peers_transfers_split_its_share_and_drains_are_found_in_time_order() -> None:
    # Virtual time: settling only the peer an event touches must give the same times as
    # re-sharing everything. Line 20 MB/s between peers a and b (10 MB/s each); a's two
    # transfers get 5 MB/s each until a1 drains at 2 s, then a2 has 10 MB left at 10 MB/s (3 s);
    # b has 10 MB of its 40 MB left at 3 s, alone at 20 MB/s: 3.5 s.
    loop = EventLoop()
    link = Link(loop, 20e6, TcpParams(rtt_s=0.0))
    done: dict = {}
    for name, peer, nbytes in (("a1", "a", 10e6), ("a2", "a", 20e6), ("b", "b", 40e6)):
        t = link.start(peer, nbytes, lambda name=name: done.setdefault(name, loop.now))
        link.supply(t, nbytes)
    loop.run_until(100)
    assert done["a1"] == pytest.approx(2.0) and done["a2"] == pytest.approx(3.0)
    assert done["b"] == pytest.approx(3.5)
    assert link.bytes_sent == pytest.approx(70e6) and link.backlog_bytes == pytest.approx(0.0)
    assert link.active_transfers == 0
