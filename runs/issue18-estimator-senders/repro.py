"""issue 18: one projection scenario (1,536 GPUs) with its failures and, optionally, the short-term
controller inputs per tick. Usage: PYTHONPATH=<tree> python repro.py SECONDS MODEL [EVERY_N_TICKS [MAX]]"""

import json
import sys
import time

from prfaas.router.control import short_term as ST
from prfaas.tools.sim import projections as P

log = []
_orig_upd = ST.ShortTermController.update


def upd(self, tel):
    d = _orig_upd(self, tel)
    log.append(
        (
            tel.egress_bytes_per_s,
            tel.capacity_bytes_per_s,
            tel.backlog_bytes,
            tel.link_saturated,
            self.offered_bytes_per_s,
            tel.committed_bytes,
            tel.local_wait_s,
            d.threshold,
            d.reason,
        )
    )
    return d


ST.ShortTermController.update = upd
dur = float(sys.argv[1])
which = sys.argv[2] if len(sys.argv) > 2 else "MiniMax-M2.5"
m = [x for x in P.MODELS if x.name == which][0]
t0 = time.time()
row, res = P.simulate(P.Scenario(m, 16, dur), 0)
fails = sum(1 for r in res.requests if r.error is not None)
errs = {}
for r in res.requests:
    if r.error is not None:
        errs[str(r.error)[:40]] = errs.get(str(r.error)[:40], 0) + 1
print(
    json.dumps(
        {
            k: row[k]
            for k in (
                "offload_fraction",
                "egress_mean_gbps",
                "egress_p99_gbps",
                "idle_share",
                "rate_rps",
                "threshold_tokens",
            )
        }
    ),
    "failed",
    fails,
    "of",
    len(res.requests),
    errs,
    "wall",
    round(time.time() - t0, 1),
    "routing",
    res.routing,
)
if len(sys.argv) > 3:
    step = int(sys.argv[3])
    lim = int(sys.argv[4]) if len(sys.argv) > 4 else 10**9
    print("s egressGBs capGBs backlogGB sat offeredGBs committedGB localwait t reason")
    for i, (e, c, b, s, o, k, w, t, r) in enumerate(log[:lim]):
        if i % step == 0:
            print(
                i + 1,
                f"{e / 1e9:.1f} {c / 1e9:.1f} {b / 1e9:.1f} {int(s)} {o / 1e9:.1f} {(k or 0) / 1e9:.0f} {w:.1f} {t:.0f} {r}",
            )
