"""One simulated worker: its role, its prefill and decode engines, and the snapshot the router
sees of it (the same `WorkerSnapshot` the registry builds from a real worker's load report).

A PD worker can change role (long-term controller): it drains (ineligible, finishes what it has)
and then serves its new role. Queue depth follows the router's view of a real worker: requests
waiting for their decode admission, for or in prefill, plus (PrfaaS) finished prefills whose KV is still on the line.
"""

from __future__ import annotations

from collections.abc import Callable

from prfaas.roles import Role
from prfaas.router.policy import WorkerSnapshot
from prfaas.tools.sim.decode import DecodeStage
from prfaas.tools.sim.prefill import PrefillStage

PREFILL_ROLES = (Role.PREFILL, Role.PRFAAS, Role.MIXED)


class SimInstance:
    def __init__(
        self,
        worker_id: str,
        cluster: str,
        role: Role,
        prefill: PrefillStage,
        decode: DecodeStage,
        max_num_seqs: int,
    ) -> None:
        if role is Role.MIXED:
            raise ValueError("the simulator models disaggregated roles only (no mixed workers)")
        self.worker_id, self.cluster = worker_id, cluster
        self.role: Role = role  # not the narrowed type: a role flip may set any role
        self.prefill, self.decode = prefill, decode
        self.max_num_seqs = max_num_seqs
        self.held = 0
        """PrfaaS: finished prefills whose KV transfer has not completed."""
        self.draining = False
        self.pending_role: Role | None = None
        self.on_change: Callable[[SimInstance], None] | None = None
        prefill.on_change = decode.on_change = self.changed

    def changed(self) -> None:
        if self.pending_role is not None and self.idle:
            self.role, self.pending_role, self.draining = self.pending_role, None, False
            if self.prefill.cache is not None:
                self.prefill.cache.clear()
        if self.on_change is not None:
            self.on_change(self)

    @property
    def idle(self) -> bool:
        return self.prefill.depth == 0 and self.held == 0 and self.decode.idle

    def set_role(self, role: Role) -> None:
        """Drain, then serve `role` (immediately when idle)."""
        if role is self.role:
            return
        self.pending_role, self.draining = role, True
        self.changed()

    @property
    def is_prefill(self) -> bool:
        return self.role in PREFILL_ROLES

    @property
    def queue_depth(self) -> int:
        if self.is_prefill:
            return self.prefill.depth + self.held
        return self.decode.waiting_for_kv

    @property
    def load(self) -> float:
        if self.is_prefill:
            return min(1.0, self.queue_depth / self.max_num_seqs)
        return self.decode.load

    def snapshot(self) -> WorkerSnapshot:
        return WorkerSnapshot(
            worker_id=self.worker_id,
            cluster=self.cluster,
            role=self.role,
            healthy=True,
            draining=self.draining,
            queue_depth=self.queue_depth,
            load=self.load,
            seats_taken=None if self.is_prefill else self.decode.seats_taken,
            free_kv_tokens=self.decode.free_kv_tokens,
        )
