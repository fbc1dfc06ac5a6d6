"""issue 18 what-if (not the committed code): the short-term controller handed backlog = committed = 0
on ticks the capacity estimator calls sender-bound. Usage: python whatif.py 300 MiniMax-M2.5"""

import dataclasses
import sys

from prfaas.router.control import link_capacity as LC
from prfaas.router.control import short_term as ST
from prfaas.tools.sim import projections as P

last = {}
_u = LC.LinkCapacityEstimator.update


def u(self, s):
    r = _u(self, s)
    last["sb"] = self.sender_bound
    return r


LC.LinkCapacityEstimator.update = u
_o = ST.ShortTermController.update


def upd(self, tel):
    if last.get("sb"):
        tel = dataclasses.replace(tel, backlog_bytes=0.0, committed_bytes=0.0)
    return _o(self, tel)


ST.ShortTermController.update = upd
m = [x for x in P.MODELS if x.name == sys.argv[2]][0]
row, res = P.simulate(P.Scenario(m, 16, float(sys.argv[1])), 0)
print(
    round(row["offload_fraction"], 3),
    round(row["egress_mean_gbps"]),
    round(row["egress_p99_gbps"]),
    "failed",
    sum(1 for r in res.requests if r.error),
    "of",
    len(res.requests),
)
