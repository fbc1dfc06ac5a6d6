"""At scale `route()` gets a pruned worker list; its decisions must equal those on every worker."""

from __future__ import annotations

import numpy as np

import prfaas.tools.sim.router as sim_router
from prfaas.block_hash import hash_block
from prfaas.router.policy import route
from tests.sim.helpers import small_sim


def _shared_prefix_hashes(rng: np.random.Generator, blocks: int) -> tuple[int, ...]:
    """Chains drawn from 5 'documents', so requests share prefixes of different lengths."""
    doc = int(rng.integers(5))
    out, parent = [], 0
    for k in range(blocks):
        parent = hash_block(parent, (doc, k))
        out.append(parent)
    return tuple(out)


def test_pruned_candidates_decide_as_the_full_list(monkeypatch) -> None:  # noqa: ANN001
    sim, reqs = small_sim(n=300, rate=9.0, instances_factor=4)  # 48 workers: pruned
    assert sim.view.prune
    rng = np.random.default_rng(1)
    for r in reqs:
        r.block_hashes = _shared_prefix_hashes(rng, r.input_tokens // 256)
    compared = []

    def both(req, snaps, match, link, t, cfg, base):  # noqa: ANN001, ANN202
        pruned = route(req, snaps, match, link, t, cfg, base)
        full = route(req, sim.view.all(), match, link, t, cfg, base)
        compared.append((pruned, full, len(snaps)))
        return pruned

    monkeypatch.setattr(sim_router, "route", both)
    sim.run(reqs)
    assert len(compared) == 300
    assert all(p == f for p, f, _ in compared)
    assert max(n for _, _, n in compared) < 48  # really pruned
    assert any(p.cached_tokens > 0 for p, _, _ in compared)  # prefixes really decided some
