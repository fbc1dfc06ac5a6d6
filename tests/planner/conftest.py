"""Small synthetic profiles whose Eq. 1-8 values can be computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from prfaas.planner.profiles import DecodeProfile, PrefillProfile


@pytest.fixture
def linear_profile() -> PrefillProfile:
    """T_prefill(l) = l / 1000 s and S_kv(l) = 1000·l bytes (Φ_kv = 8 Mbps, flat)."""
    return PrefillProfile(
        "linear", np.array([1000.0, 4000.0]), np.array([1.0, 4.0]), np.array([1e6, 4e6])
    )


@pytest.fixture
def fast_decode() -> DecodeProfile:
    """Θ_pd-d = 100 req/s per decode instance with 10 output tokens (never binds)."""
    return DecodeProfile(max_batch=100, step_seconds=0.1)
