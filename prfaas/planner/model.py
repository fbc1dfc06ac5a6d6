"""The paper's analytical throughput model (Eqs. 2-8), one small function per equation.

All rates are requests per second; bandwidth is bytes per second inside the model (the CLI
converts to decimal Gbps at the edge). Every function accepts scalars or numpy arrays, so the
grid search evaluates a whole row of thresholds at once. A stage that receives no traffic
(p = 0 for PrfaaS, p = 1 for PD-P) has rate/share = +inf: it never limits Λ_max.
"""

from __future__ import annotations

import numpy as np

from prfaas.planner.profiles import BITS_PER_BYTE, DecodeProfile, PrefillProfile


def gbps_to_bytes_per_s(gbps: float) -> float:
    """Decimal gigabits per second to bytes per second."""
    return gbps * 1e9 / BITS_PER_BYTE


def cluster_egress(n_instances: float, profile: PrefillProfile, l_avg: float) -> np.ndarray:
    """Eq. 2: egress bytes/s of a saturated prefill cluster, N/P · Φ_kv(L_avg) (N/P = instances)."""
    return n_instances * profile.s_kv(l_avg) / profile.t_prefill(l_avg)


def theta_prfaas(
    n_prfaas: float, profile: PrefillProfile, l_long: np.ndarray, b_out: float
) -> np.ndarray:
    """Eq. 3: min(N_prfaas / T_prefill(l_long), B_out / S_kv(l_long)); prefill and send pipeline."""
    l_long = np.asarray(l_long, dtype=float)
    compute = n_prfaas / profile.t_prefill(l_long)
    link = b_out / profile.s_kv(l_long)
    return np.minimum(compute, link)


def theta_pd_prefill(n_p: float, profile: PrefillProfile, l_short: np.ndarray) -> np.ndarray:
    """Eq. 4: N_p / T_prefill(l_short); intra-cluster RDMA is not a bottleneck."""
    return n_p / profile.t_prefill(np.asarray(l_short, dtype=float))


def theta_pd_decode(n_d: float, decode: DecodeProfile, output_tokens: float) -> float:
    """Eq. 5: N_d · BS_max / (T_decode · L_out)."""
    return n_d * decode.max_batch / (decode.step_seconds * output_tokens)


def _per_share(theta: np.ndarray, share: np.ndarray) -> np.ndarray:
    """theta / share, +inf where the stage gets no traffic (share == 0)."""
    theta = np.asarray(theta, dtype=float)
    share = np.asarray(share, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(share > 0, theta / np.where(share > 0, share, 1.0), np.inf)
    return out


def prefill_capacity(
    theta_prfaas_rps: np.ndarray, theta_pd_p_rps: np.ndarray, p: np.ndarray
) -> np.ndarray:
    """The prefill side of Eq. 6: min(Θ_prfaas / p, Θ_pd-p / (1 - p))."""
    p = np.asarray(p, dtype=float)
    return np.minimum(_per_share(theta_prfaas_rps, p), _per_share(theta_pd_p_rps, 1.0 - p))


def lambda_max(
    theta_prfaas_rps: np.ndarray, theta_pd_p_rps: np.ndarray, theta_pd_d_rps: float, p: np.ndarray
) -> np.ndarray:
    """Eq. 6: min(Θ_prfaas / p, Θ_pd-p / (1 - p), Θ_pd-d)."""
    return np.minimum(prefill_capacity(theta_prfaas_rps, theta_pd_p_rps, p), theta_pd_d_rps)


def threshold_imbalance(
    theta_prfaas_rps: np.ndarray, theta_pd_p_rps: np.ndarray, p: np.ndarray
) -> np.ndarray:
    """Eq. 7 residual: log(Θ_prfaas/p) - log(Θ_pd-p/(1-p)); zero where both prefill stages
    saturate together, positive where PrfaaS has headroom (t could fall)."""
    a = _per_share(theta_prfaas_rps, p)
    b = _per_share(theta_pd_p_rps, 1.0 - np.asarray(p, dtype=float))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.log(a) - np.log(b)


def split_imbalance(theta_prfaas_rps: float, theta_pd_p_rps: float, theta_pd_d_rps: float) -> float:
    """Eq. 8 residual: (Θ_prfaas + Θ_pd-p) / Θ_pd-d - 1; zero when producers match the consumer."""
    return (theta_prfaas_rps + theta_pd_p_rps) / theta_pd_d_rps - 1.0
