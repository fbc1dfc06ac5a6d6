"""Which router's long-term planner may change worker roles (one leader among router replicas).

Every router replica plans the threshold t from what it sees (harmless: t is its own routing
parameter), but role changes act on shared workers, so only the leader applies them. Two
implementations of one small interface:

- `SoleLeader`: always the leader (tests, and a router told it is alone).
- `WorkerArbitratedLeadership`: the lease a PD worker arbitrates (prfaas/worker/planner_lease.py,
  the `PlannerLease` RPC). The arbiter is the healthy PD worker of the local cluster with the
  smallest id, so every replica that sees the same workers asks the same one; if it does not
  answer, the next one is asked. The leader renews its lease every planner period (`held()` is
  called once per long tick, ControlLoops.long_tick) with a time to live of several periods, so a
  dead leader is replaced within that time. A worker too old to serve the RPC (UNIMPLEMENTED)
  cannot arbitrate: the router then acts as before (leader), and says so once.

Limits: two replicas that disagree on the smallest healthy id (one has not yet seen a worker's
registration or death) may both lead for up to one lease; an arbiter that restarts forgets the
lease and grants it to whoever asks first.
"""

from __future__ import annotations

import abc
import logging
import os
import socket
import uuid

import grpc

from prfaas._proto.prfaas.v1 import worker_pb2
from prfaas.router.registry import WorkerRegistry

log = logging.getLogger(__name__)


def router_holder_id() -> str:
    """A name for this router process that no other replica shares: host, pid and a random part
    (a restarted router is a new holder, so it waits for its predecessor's lease to run out)."""
    return f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:8]}"


class PlannerLeadership(abc.ABC):
    """Asked by the control loops once per long-term tick, before applying role changes."""

    @abc.abstractmethod
    async def held(self) -> bool:
        """Acquire or renew leadership; True while this router may change roles. Never raises."""

    @abc.abstractmethod
    async def release(self) -> None:
        """Give leadership up (the router is stopping) so another replica takes over at once."""


class SoleLeader(PlannerLeadership):
    async def held(self) -> bool:
        return True

    async def release(self) -> None:
        return None


class WorkerArbitratedLeadership(PlannerLeadership):
    def __init__(
        self,
        registry: WorkerRegistry,
        local_cluster: str,
        holder: str,
        ttl_s: float,
        rpc_timeout_s: float = 2.0,
    ) -> None:
        self.registry, self.local_cluster = registry, local_cluster
        self.holder, self.ttl_s, self.rpc_timeout_s = holder, ttl_s, rpc_timeout_s
        self.leader: bool | None = None
        """The last answer (None before the first), for logs and metrics."""
        self.arbiter = ""
        self._said_unimplemented = False

    async def held(self) -> bool:
        leader = await self._ask(
            worker_pb2.PlannerLeaseRequest(holder=self.holder, ttl_s=self.ttl_s)
        )
        if leader != self.leader:
            log.info("planner leadership: %s (arbiter %s)", "leader" if leader else "follower",
                     self.arbiter or "none")  # fmt: skip
        self.leader = leader
        return leader

    async def release(self) -> None:
        if self.leader:
            await self._ask(worker_pb2.PlannerLeaseRequest(holder=self.holder, release=True))
            self.leader = False

    async def _ask(self, request: worker_pb2.PlannerLeaseRequest) -> bool:
        arbiters = sorted(
            (h for h in self.registry.healthy(self.local_cluster) if h.kind == "pd"),
            key=lambda h: h.worker_id,
        )
        for handle in arbiters:
            try:
                answer = await handle.stub.PlannerLease(request, timeout=self.rpc_timeout_s)
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                    if not self._said_unimplemented:
                        log.warning("worker %s cannot arbitrate the planner lease (too old): "
                                    "this router applies its role changes alone", handle.worker_id)  # fmt: skip
                        self._said_unimplemented = True
                    self.arbiter = ""
                    return True
                log.warning("planner lease: %s did not answer (%s); asking the next worker",
                            handle.worker_id, exc.code())  # fmt: skip
                continue
            self.arbiter = handle.worker_id
            return bool(answer.granted)
        # No PD worker answered: there is nothing to change roles on, and nobody to agree with.
        self.arbiter = ""
        return False
