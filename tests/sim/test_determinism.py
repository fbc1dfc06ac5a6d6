"""Same inputs and seed -> the same run, event for event; another seed -> another run."""

from __future__ import annotations

from tests.sim.helpers import small_sim


def _fingerprint(seed: int) -> tuple:
    sim, reqs = small_sim(n=150, seed=seed)
    res = sim.run(reqs)
    return (
        res.stats["events"],
        tuple(
            (r.route, r.prefill_worker, r.decode_worker, r.first_token_s, r.finish_s)
            for r in res.requests
        ),  # fmt: skip
        tuple(tuple(s.values()) for s in res.timeline),
    )


def test_same_seed_same_run() -> None:
    assert _fingerprint(3) == _fingerprint(3)


def test_other_seed_other_run() -> None:
    assert _fingerprint(3) != _fingerprint(4)
