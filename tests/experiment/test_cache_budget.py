"""The experiment's workers hold more than BS_max requests of the workload's mean prompt, so decode
capacity is the seats the planner models, not memory (issue 12: at a fixed 256 MiB and byte factor
0.05 the decode workers held ~11 such requests, and their admission queue for memory dominated
TTFT after a link cut)."""

from __future__ import annotations

import math

import pytest

from prfaas.engine.backend_emulated import EmulatedBackend
from prfaas.engine.block_pool import BlockPool
from prfaas.planner.profiles import PrefillProfile
from prfaas.tools.experiment.deploy import topology_for
from prfaas.tools.experiment.scale import (
    MIN_CACHE_BUDGET_MB,
    PAPER_MIN,
    PAPER_MU,
    PAPER_SIGMA,
    PD_PROFILE,
    Scale,
    TruncatedLogNormal,
    predict,
)


@pytest.mark.parametrize("byte_factor", [0.01, 0.05])
def test_a_decode_worker_holds_more_requests_of_the_mean_prompt_than_its_seats(
    byte_factor: float,
) -> None:
    scale = Scale(byte_factor=byte_factor)
    _, prediction = predict(scale)
    topo = topology_for("prfaas", prediction, scale, port_base=36000)
    backend = EmulatedBackend(
        PrefillProfile.from_csv(PD_PROFILE), byte_factor=scale.byte_factor,
        block_size=topo.block_size,
    )  # fmt: skip
    # The engine's own split of the budget into KV blocks and state slots.
    pool = BlockPool(int(topo.cache_budget_mb) << 20, backend.block_bytes,
                     backend.state_bytes_per_request)  # fmt: skip
    mean = TruncatedLogNormal(PAPER_MU, PAPER_SIGMA, PAPER_MIN, scale.max_input_tokens).mean
    blocks_per_request = math.ceil((mean + scale.output_tokens) / topo.block_size)
    assert topo.max_num_seqs == scale.decode_max_batch
    assert pool.num_blocks / blocks_per_request > topo.max_num_seqs
    assert pool.num_slots > topo.max_num_seqs
    assert topo.cache_budget_mb >= MIN_CACHE_BUDGET_MB
