"""Hardware profiles for the analytical model: prefill time and KV size against input length.

A profile is measured on one instance (P GPUs, e.g. 8) and read from a CSV with the columns
`input_tokens,prefill_seconds,kv_bytes` (the case study's format). Between rows the model
interpolates linearly; outside the measured range it extrapolates from the two end rows, so a
threshold just past the last row still gets a finite, monotone estimate.

`PrefillProfile` is the one profile type: the planner evaluates it over arrays, the emulated
backend (`prfaas.engine.backend_emulated`) reads scalars from the same interpolation.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BITS_PER_BYTE = 8


@dataclass(frozen=True)
class PrefillProfile:
    """Prefill latency T_prefill(l) and KVCache size S_kv(l) of one instance.

    Arrays are sorted by `input_tokens` and have at least two rows.
    """

    name: str
    """Label used in tables (e.g. the CSV file stem)."""
    input_tokens: np.ndarray
    """[num_rows] float, strictly increasing."""
    prefill_seconds: np.ndarray
    """[num_rows] float, seconds for one request of that length on one instance."""
    kv_bytes: np.ndarray
    """[num_rows] float, bytes of KVCache (KV blocks plus linear states) the request produces."""

    def __post_init__(self) -> None:
        if len(self.input_tokens) < 2:
            raise ValueError(f"profile {self.name!r} needs at least two rows")
        if np.any(np.diff(self.input_tokens) <= 0):
            raise ValueError(f"profile {self.name!r}: input_tokens must be strictly increasing")

    def t_prefill(self, length: float | np.ndarray) -> np.ndarray:
        """Seconds to prefill `length` uncached tokens on one instance (Table 4's T_prefill)."""
        return _interp(length, self.input_tokens, self.prefill_seconds)

    def s_kv(self, length: float | np.ndarray) -> np.ndarray:
        """Bytes of KVCache produced by a prefill of `length` tokens (Table 4's S_kv)."""
        return _interp(length, self.input_tokens, self.kv_bytes)

    @classmethod
    def from_csv(cls, path: str | Path) -> PrefillProfile:
        """Read a `input_tokens,prefill_seconds,kv_bytes` CSV (see `load_profile_csv`)."""
        return load_profile_csv(path)

    def seconds(self, length: float) -> float:
        """Scalar T_prefill(length): what the emulated backend sleeps for a prefill."""
        return float(self.t_prefill(length))

    def bytes(self, length: float) -> float:
        """Scalar S_kv(length)."""
        return float(self.s_kv(length))

    @property
    def kv_bytes_per_token(self) -> float:
        """Slope of kv_bytes over the whole table (the full-attention KV of one token)."""
        xs, ys = self.input_tokens, self.kv_bytes
        return float((ys[-1] - ys[0]) / (xs[-1] - xs[0]))

    @property
    def state_bytes(self) -> float:
        """Intercept: the length-independent linear state of one request."""
        return float(self.kv_bytes[0] - self.kv_bytes_per_token * self.input_tokens[0])

    def phi_kv_gbps(self, length: float | np.ndarray) -> np.ndarray:
        """Eq. 1: per-instance KV throughput S_kv(l) / T_prefill(l), in decimal Gbps."""
        return self.s_kv(length) * BITS_PER_BYTE / self.t_prefill(length) / 1e9


@dataclass(frozen=True)
class DecodeProfile:
    """Decode capacity of one instance at the SLO (Eq. 5's constants)."""

    max_batch: int = 20
    """BS_max: concurrent requests one decode instance holds while meeting the SLO."""
    step_seconds: float = 0.025
    """T_decode: seconds per decode step at that batch (1 / SLO tokens-per-second)."""


def _interp(x: float | np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Piecewise-linear interpolation with linear extrapolation from the end segments."""
    x = np.asarray(x, dtype=float)
    out = np.interp(x, xs, ys)
    lo_slope = (ys[1] - ys[0]) / (xs[1] - xs[0])
    hi_slope = (ys[-1] - ys[-2]) / (xs[-1] - xs[-2])
    out = np.where(x < xs[0], ys[0] + (x - xs[0]) * lo_slope, out)
    out = np.where(x > xs[-1], ys[-1] + (x - xs[-1]) * hi_slope, out)
    return out


def load_profile_csv(path: str | Path) -> PrefillProfile:
    """Read a `input_tokens,prefill_seconds,kv_bytes` CSV into a `PrefillProfile`."""
    path = Path(path)
    rows: list[tuple[float, float, float]] = []
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            rows.append(
                (float(row["input_tokens"]), float(row["prefill_seconds"]), float(row["kv_bytes"]))
            )
    rows.sort()
    arr = np.array(rows, dtype=float).reshape(-1, 3)
    return PrefillProfile(path.stem, arr[:, 0], arr[:, 1], arr[:, 2])
