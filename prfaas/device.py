"""Process-wide compute settings: which device, how many torch threads.

Several prfaas processes often share a small machine; each defaults to one torch thread so they do
not stall each other's OpenMP barriers (see docs/hybrid-model.md §4.4).
"""

from __future__ import annotations

import os

import torch

THREADS_ENV = "PRFAAS_TORCH_THREADS"
DEVICE_ENV = "PRFAAS_DEVICE"


def configure_threads(num_threads: int | None = None) -> int:
    """Set torch's intra-op threads (default: $PRFAAS_TORCH_THREADS, else 1) and return the count."""
    if num_threads is None:
        num_threads = int(os.environ.get(THREADS_ENV, "1"))
    if num_threads < 1:
        raise ValueError(f"torch threads must be >= 1, got {num_threads}")
    torch.set_num_threads(num_threads)
    return num_threads


def pick_device(requested: str | None = None) -> torch.device:
    """CUDA when available (or asked for), CPU otherwise. $PRFAAS_DEVICE overrides the default."""
    requested = requested or os.environ.get(DEVICE_ENV) or "auto"
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {requested!r} requested but CUDA is not available")
    return device
