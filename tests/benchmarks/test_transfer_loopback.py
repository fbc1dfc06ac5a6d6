"""`prfaas bench transfer --scenario loopback` at a tiny size: interleaved trials of ours and
sendall, each with goodput and both processes' CPU per GiB as median [min, max], the ratios of the
medians and the sender cores per line rate from the measured CPU per GiB. Several trials in a row
over the same connections also cover the receiving peer closing only after the sender did (closing
first raced the last ACK and failed the last trial with PeerLost)."""

from __future__ import annotations

import argparse

from prfaas.tools.benchmarks.transfer import scenario_loopback


def test_loopback_scenario_reports_interleaved_medians_and_cores() -> None:
    args = argparse.Namespace(loopback_mib=4, loopback_trials=3, connections=2, chunk_mib=1.0)
    out = scenario_loopback(args)
    assert out["trials"] == 3 and out["kv_bytes"] == 4 << 20
    for mode in ("sendall", "ours"):
        row = out[mode]
        for key in ("goodput_GBps", "sender_cpu_s_per_GiB", "receiver_cpu_s_per_GiB"):
            median, lo, hi = row[key]
            assert 0 < lo <= median <= hi, (mode, key, row[key])
        cpu = row["sender_cpu_s_per_GiB"][0]
        # 100 Gbit/s carries 12.5e9 B/s of KV (no compression): cores = that many GiB x CPU s/GiB.
        assert abs(row["sender_cores_at_gbps"][100] - 12.5e9 / (1 << 30) * cpu) < 0.01
    ours, base = out["ours"], out["sendall"]
    ratio = ours["sender_cpu_s_per_GiB"][0] / base["sender_cpu_s_per_GiB"][0]
    assert abs(ours["sender_cpu_vs_sendall"] - ratio) < 0.01
    assert base["sender_cpu_vs_sendall"] == 1.0
