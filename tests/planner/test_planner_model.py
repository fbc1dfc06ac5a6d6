"""Eqs. 1-6 and the threshold split against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from prfaas.planner import model as eq
from prfaas.planner.profiles import DecodeProfile, PrefillProfile
from prfaas.planner.workload import EmpiricalLengths


def test_profile_interpolates_and_extrapolates_linearly() -> None:
    prof = PrefillProfile(
        "p",
        np.array([100.0, 200.0, 400.0]),
        np.array([1.0, 2.0, 6.0]),
        np.array([10.0, 30.0, 50.0]),
    )
    assert prof.t_prefill(150) == pytest.approx(1.5)
    assert prof.t_prefill(300) == pytest.approx(4.0)
    assert prof.s_kv(300) == pytest.approx(40.0)
    # beyond the last row: slope of the last segment (4 s per 200 tokens)
    assert prof.t_prefill(500) == pytest.approx(8.0)
    assert prof.t_prefill(50) == pytest.approx(0.5)


def test_phi_kv_eq1_in_decimal_gbps(linear_profile: PrefillProfile) -> None:
    # 2e6 bytes in 2 s = 1e6 B/s = 8e6 bit/s = 0.008 Gbps
    assert linear_profile.phi_kv_gbps(2000) == pytest.approx(0.008)


def test_cluster_egress_eq2(linear_profile: PrefillProfile) -> None:
    # 4 instances each producing 1e6 B/s
    assert eq.cluster_egress(4, linear_profile, 3000) == pytest.approx(4e6)


@pytest.mark.parametrize(
    ("n_prfaas", "b_out", "l_long", "expected"),
    [
        (2, 1e9, 2000.0, 1.0),  # compute-bound: 2 / T(2000) = 2 / 2
        (2, 1.5e6, 2000.0, 0.75),  # link-bound: 1.5e6 / S(2000) = 1.5e6 / 2e6
        (4, 4e6, 4000.0, 1.0),  # both equal
    ],
)
def test_theta_prfaas_eq3(linear_profile, n_prfaas, b_out, l_long, expected) -> None:
    assert eq.theta_prfaas(n_prfaas, linear_profile, l_long, b_out) == pytest.approx(expected)


def test_theta_pd_eq4_eq5(linear_profile: PrefillProfile) -> None:
    assert eq.theta_pd_prefill(3, linear_profile, 1500.0) == pytest.approx(2.0)
    # 5 instances · 20 batch / (0.025 s · 1000 tokens) = 4 req/s
    assert eq.theta_pd_decode(5, DecodeProfile(20, 0.025), 1000) == pytest.approx(4.0)


@pytest.mark.parametrize(
    ("th_prfaas", "th_pdp", "th_pdd", "p", "expected"),
    [
        (1.0, 2.0, 10.0, 0.5, 2.0),  # PrfaaS binds: 1 / 0.5
        (3.0, 1.0, 10.0, 0.5, 2.0),  # PD-P binds: 1 / 0.5
        (3.0, 3.0, 1.5, 0.5, 1.5),  # decode binds
        (0.0, 2.0, 10.0, 0.0, 2.0),  # p = 0: PrfaaS unused never binds
        (2.0, 0.0, 10.0, 1.0, 2.0),  # p = 1: PD-P unused never binds
        (1.0, 3.0, 10.0, 0.25, 4.0),  # 1/0.25 = 4 = 3/0.75
    ],
)
def test_lambda_max_eq6(th_prfaas, th_pdp, th_pdd, p, expected) -> None:
    assert float(eq.lambda_max(th_prfaas, th_pdp, th_pdd, p)) == pytest.approx(expected)


def test_balance_residuals_eq7_eq8() -> None:
    assert float(eq.threshold_imbalance(1.0, 3.0, 0.25)) == pytest.approx(0.0, abs=1e-12)
    assert float(eq.threshold_imbalance(2.0, 3.0, 0.25)) == pytest.approx(math.log(2.0))
    assert eq.split_imbalance(1.0, 3.0, 4.0) == pytest.approx(0.0)
    assert eq.split_imbalance(1.0, 1.0, 4.0) == pytest.approx(-0.5)


@pytest.mark.parametrize(
    ("t", "p", "l_short", "l_long"),
    [
        (500.0, 1.0, math.nan, 2500.0),
        (1000.0, 0.75, 1000.0, 3000.0),
        (2999.0, 0.5, 1500.0, 3500.0),
        (3000.0, 0.25, 2000.0, 4000.0),
        (4000.0, 0.0, 2500.0, math.nan),
    ],
)
def test_empirical_split(t, p, l_short, l_long) -> None:
    split = EmpiricalLengths.from_samples([4000, 1000, 3000, 2000]).split(np.array([t]))
    assert split.p[0] == pytest.approx(p)
    np.testing.assert_allclose(split.l_short[0], l_short)
    np.testing.assert_allclose(split.l_long[0], l_long)
