"""Bucket lists and the plain statistics records that components hand to the metric groups."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# vLLM's bucket lists (vllm/v1/metrics/loggers.py).
TTFT_BUCKETS_S = (
    0.001,
    0.005,
    0.01,
    0.02,
    0.04,
    0.06,
    0.08,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    20.0,
    40.0,
    80.0,
    160.0,
    640.0,
    2560.0,
)
ITL_BUCKETS_S = (
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.3,
    0.4,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    20.0,
    40.0,
    80.0,
)
E2E_BUCKETS_S = (
    0.3,
    0.5,
    0.8,
    1.0,
    1.5,
    2.0,
    2.5,
    5.0,
    10.0,
    15.0,
    20.0,
    30.0,
    40.0,
    50.0,
    60.0,
    120.0,
    240.0,
    480.0,
    960.0,
    1920.0,
    7680.0,
)
# vLLM's NIXL transfer-time list, extended past 5 s because prfaas ships KV across datacenters.
TRANSFER_BUCKETS_S = (
    0.001,
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.2,
    0.3,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    10.0,
    20.0,
    40.0,
)
# Powers of two from 2 KiB to 16 GiB, as vLLM's nixl_bytes_transferred.
TRANSFER_SIZE_BUCKETS_BYTES = tuple(float(2**k) for k in range(11, 35))

FINISHED_REASONS = ("stop", "length", "abort", "error")
"""Values of the `finished_reason` label of `prfaas_request_success_total`."""


@dataclass(frozen=True)
class RequestStats:
    """One finished (or aborted) request as the router's HTTP layer saw it."""

    finished_reason: str
    """One of FINISHED_REASONS."""
    e2e_s: float
    ttft_s: float | None
    """None when no token was produced."""
    itl_s: Sequence[float]
    """One gap per generated token after the first."""
    num_prompt_tokens: int
    num_generation_tokens: int
    num_cached_tokens: int


@dataclass(frozen=True)
class WorkerStats:
    """A worker's scheduler state, sampled once per scheduler step or load report."""

    worker: str
    num_requests_running: int
    num_requests_waiting: int
    kv_cache_usage: float
    """Fraction of KV blocks in use, 0..1."""


@dataclass(frozen=True)
class TransferStats:
    """One KV transfer, recorded by the side that finished it (sender or receiver)."""

    link: str
    direction: str
    """"sent" or "received"."""
    num_bytes: int
    duration_s: float
    exposed_s: float
    """Time the decode side waited for KV after prefill compute finished (not overlapped)."""


@dataclass(frozen=True)
class LinkStats:
    """TCP and goodput telemetry of one inter-datacenter link, sampled periodically."""

    link: str
    goodput_bytes_per_s: float
    utilization: float
    """Goodput divided by the link's nominal bandwidth, 0..1."""
    rtt_s: float
    num_retransmits: int
    """Retransmitted segments since the previous sample."""
    bytes_in_flight: int = 0
    """Bytes handed to the kernel and not yet acknowledged by the receiver."""
    queued_bytes: int = 0
    """Bytes producers added that are not yet on the wire (sender backlog)."""


@dataclass(frozen=True)
class RelayStats:
    """State of one `prfaas link` relay, sampled periodically."""

    bytes_relayed: int
    connections: int
    rate_bytes_per_s: float
    """Rate cap per direction; 0 when uncapped."""
    delay_s: float
    up: bool
    """False while the link is cut (down) or stalled."""
