"""Worker roles: the one owner of what a worker may be asked to do (torch-free, import-light).

A PrfaaS-cluster worker has role `prfaas` (prefill only, it ships caches across the link and never
decodes). A PD-cluster worker has one of `PD_ROLES`, changeable at run time (`SetRole`):
`mixed` (prefill and decode), `prefill` (PD-P: ships caches to decode workers) or `decode` (PD-D:
decodes requests whose KV arrives from a prefill worker). The router's policy, the worker
services, the topology file and the CLI all take their roles from here.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    PREFILL = "prefill"
    DECODE = "decode"
    MIXED = "mixed"
    PRFAAS = "prfaas"
    """A PrfaaS prefill worker (remote cluster, never decodes)."""


PD_ROLES: tuple[str, ...] = (Role.MIXED.value, Role.PREFILL.value, Role.DECODE.value)
"""The roles a PD worker may take, as plain strings (CLI choices, topology `pd.roles`, SetRole)."""
