"""`prfaas bench transfer --scenario netns`: goodput across a veth between two namespaces shaped
with tbf, against iperf3 and a plain single-socket Python `sendall` on the same link and in the
same run. Rounds alternate iperf3, sendall and ours; figures are medians over the rounds, so a
burst of load from other processes on the box hits every method alike. Needs root and iperf3.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

from prfaas.data import netns_script

MIB = 1 << 20


def _iperf(ns_a: str, ns_b: str, seconds: int) -> float:
    srv = subprocess.Popen(
        ["ip", "netns", "exec", ns_b, "iperf3", "-s", "-1"], stdout=subprocess.DEVNULL
    )
    time.sleep(0.5)
    out = subprocess.run(
        ["ip", "netns", "exec", ns_a, "iperf3", "-c", "10.77.0.2", "-t", str(seconds), "-J"],
        capture_output=True,
        text=True,
        check=True,
    )
    srv.wait(10)
    return json.loads(out.stdout)["end"]["sum_received"]["bits_per_second"] / 8


def _in_ns_a(kind: str, mib: int, a: argparse.Namespace) -> float:
    """Bytes/s of `ours` or `sendall`, sent from namespace a by a child of the bench module."""
    cmd = ["ip", "netns", "exec", f"{a.netns_prefix}-a", sys.executable, "-m",
           "prfaas.tools.benchmarks.transfer", "--netns-prefix", a.netns_prefix,
           "--scenario", f"_netns_{kind}", "--netns-mib", str(mib),
           "--connections", str(a.connections), "--chunk-mib", str(a.chunk_mib)]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out)["bytes_per_s"]


def scenario_netns(a: argparse.Namespace) -> dict:
    if os.geteuid() != 0 or not shutil.which("iperf3"):
        return {"skipped": "needs root and iperf3"}
    env = {**os.environ, "PRFAAS_NS_PREFIX": a.netns_prefix}
    ns_a, ns_b = f"{a.netns_prefix}-a", f"{a.netns_prefix}-b"
    out: dict = {"loadavg_before": os.getloadavg()}
    med = statistics.median
    try:
        for rate, mib in (("1gbit", 256), ("10gbit", a.netns_mib)):
            subprocess.run(
                ["bash", str(netns_script("setup.sh")), rate],
                env=env,
                check=True,
                capture_output=True,
            )
            runs: dict[str, list[float]] = {"iperf3": [], "sendall": [], "ours": []}
            for _ in range(a.netns_rounds):
                runs["iperf3"].append(_iperf(ns_a, ns_b, 3))
                runs["sendall"].append(_in_ns_a("sendall", mib, a))
                runs["ours"].append(_in_ns_a("ours", mib, a))
            ip, sa, ours = (med(runs[k]) for k in ("iperf3", "sendall", "ours"))
            out[rate] = {
                "rounds": a.netns_rounds,
                "iperf3_MBps": ip / 1e6,
                "sendall_MBps": sa / 1e6,
                "ours_MBps": ours / 1e6,
                "ratio": ours / ip,
                "sendall_ratio": sa / ip,
                "ours_vs_sendall": ours / sa,
                "per_round_MBps": {k: [round(v / 1e6) for v in vs] for k, vs in runs.items()},
            }
    finally:
        subprocess.run(["bash", str(netns_script("teardown.sh"))], env=env, check=False)
    out["loadavg_after"] = os.getloadavg()
    return out


def netns_child(a: argparse.Namespace) -> dict:
    from prfaas.tools.benchmarks.transfer import baseline_sendall, run_ours

    total = a.netns_mib * MIB
    if a.scenario == ["_netns_sendall"]:
        return {"bytes_per_s": baseline_sendall("10.77.0.2", total, ns=f"{a.netns_prefix}-b")}
    return run_ours(
        "10.77.0.2", 32, total // 32, a.connections, a.chunk_mib, ns=f"{a.netns_prefix}-b"
    )
