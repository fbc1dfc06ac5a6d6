"""The prefill starts together with the decode admission, as the router's two-worker handshake
does (router/two_worker_handshake.py): P computes while D admits, and the KV moves only once D
has admitted. Before, the simulator started the prefill after the admission, which added the
admission's wait (half a decode step at a loaded point, 0.4 s at the experiment's step) to every
TTFT the running system overlaps with the prefill."""

from __future__ import annotations

from dataclasses import replace

import pytest

from prfaas.tools.sim.simulation import Simulation
from tests.sim.helpers import small_sim

ADMIT_S = 3.0  # longer than a short prompt's prefill, shorter than a long one's


@pytest.mark.parametrize("policy", ["prfaas", "homogeneous-pd"])
def test_the_prefill_starts_with_the_admission_and_the_kv_moves_after_it(policy: str) -> None:
    sim, reqs = small_sim(n=40, rate=0.2, policy=policy)  # idle between arrivals
    cfg = replace(sim.cfg, decode=replace(sim.cfg.decode, admit_hop_s=ADMIT_S))
    result = Simulation(cfg, 0).run(reqs)
    served = [r for r in result.requests if r.error is None]
    assert len(served) == len(reqs)
    for r in served:
        assert r.prefill_start_s is not None and r.prefill_end_s is not None
        assert r.first_token_s is not None
        # Not held for the admission: an idle prefill worker starts at once.
        assert r.prefill_start_s == pytest.approx(r.arrival_s, abs=0.05)
        # No KV (so no first token) before the decode worker admitted it.
        assert r.first_token_s >= r.arrival_s + ADMIT_S - 1e-9
    # Both orders occur: the admission ends some first tokens, the prefill the others.
    assert any(r.prefill_end_s < r.arrival_s + ADMIT_S for r in served)
    assert any(r.prefill_end_s > r.arrival_s + ADMIT_S for r in served)
