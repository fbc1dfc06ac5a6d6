"""Dual-timescale control (paper §3.4.3): `short_term` adapts t and the bandwidth regime to link
telemetry every tick; `long_term` periodically re-plans t and N_p/N_d from rolling statistics and
emits role changes. Both return decisions as data; the router applies, logs and exports them."""

from prfaas.router.control.arrivals import (
    ArrivalWindow,
    RecentArrivals,
    local_prefill_seconds,
)
from prfaas.router.control.link_capacity import (
    CapacitySample,
    LinkCapacityConfig,
    LinkCapacityEstimator,
)
from prfaas.router.control.long_term import (
    LongTermConfig,
    LongTermController,
    LongTermDecision,
    RoleChange,
)
from prfaas.router.control.short_term import (
    LinkTelemetry,
    ShortTermConfig,
    ShortTermController,
    ShortTermDecision,
)

__all__ = [
    "ArrivalWindow",
    "CapacitySample",
    "LinkCapacityConfig",
    "LinkCapacityEstimator",
    "LinkTelemetry",
    "LongTermConfig",
    "LongTermController",
    "LongTermDecision",
    "RecentArrivals",
    "RoleChange",
    "ShortTermConfig",
    "ShortTermController",
    "ShortTermDecision",
    "local_prefill_seconds",
]
