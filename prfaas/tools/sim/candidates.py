"""The worker list handed to `route()`: every worker for small deployments, and at scale a
pruned list that makes `route()` decide exactly as it would on every worker.

Why exact: `route()` picks a prefill worker among those within `affinity_queue_slack` of the
shortest queue by (longest usable prefix, queue, load, id) and a decode worker by (load, queue,
-free KV, id) among those with room; it tests "PrfaaS full" as "every queue at the cap". So per
cluster it needs only: every worker holding a usable prefix of the request, the best worker by
(queue, load, id) (the answer when no prefix decides; its queue is the shortest, which also
settles the cap test), and the best decode worker with room. Workers sit in buckets by queue depth
(prefill) or seats taken (decode), so finding those is a scan of one bucket, not of 1,250 workers.
`tests/sim/test_candidates.py` checks the decisions agree with the full list on random states.
"""

from __future__ import annotations

from collections.abc import Iterable

from prfaas.router.policy import WorkerSnapshot
from prfaas.router.prefix_index import PrefixMatch
from prfaas.tools.sim.instance import SimInstance

FULL_LIST_UP_TO = 32
"""Below this many workers `route()` gets all of them (cheap, and obviously the real input)."""


class CandidateView:
    def __init__(self, instances: Iterable[SimInstance], prune: bool | None = None) -> None:
        self.instances = {i.worker_id: i for i in instances}
        self.prune = len(self.instances) > FULL_LIST_UP_TO if prune is None else prune
        # (cluster, "p"|"d") -> bucket key -> worker ids
        self._buckets: dict[tuple[str, str], dict[int, set[str]]] = {}
        self._where: dict[str, tuple[tuple[str, str], int] | None] = {}
        for inst in self.instances.values():
            self._where[inst.worker_id] = None
            self.update(inst)
            inst.on_change = self.update

    def update(self, inst: SimInstance) -> None:
        old = self._where.get(inst.worker_id)
        new: tuple[tuple[str, str], int] | None = None
        if not inst.draining:
            if inst.is_prefill:
                new = ((inst.cluster, "p"), inst.queue_depth)
            else:
                new = ((inst.cluster, "d"), inst.decode.reserved)
        if new == old:
            return
        if old is not None:
            bucket = self._buckets[old[0]][old[1]]
            bucket.discard(inst.worker_id)
            if not bucket:
                del self._buckets[old[0]][old[1]]
        if new is not None:
            self._buckets.setdefault(new[0], {}).setdefault(new[1], set()).add(inst.worker_id)
        self._where[inst.worker_id] = new

    def all(self) -> list[WorkerSnapshot]:
        return [i.snapshot() for i in self.instances.values()]

    def for_request(self, match: PrefixMatch, need_kv_tokens: int) -> list[WorkerSnapshot]:
        if not self.prune:
            return self.all()
        chosen: dict[str, SimInstance] = {}
        for wid in match.per_worker:
            inst = self.instances.get(wid)
            if inst is not None and inst.is_prefill and not inst.draining:
                chosen[wid] = inst
        for (_, kind), buckets in self._buckets.items():
            if kind == "p":
                lowest = buckets[min(buckets)]
                wid = min(lowest)
                chosen[wid] = self.instances[wid]
            else:
                best = self._best_decode(buckets, need_kv_tokens)
                if best is not None:
                    chosen[best.worker_id] = best
        return [i.snapshot() for i in chosen.values()]

    def _best_decode(self, buckets: dict[int, set[str]], need: int) -> SimInstance | None:
        for seats in sorted(buckets):
            fits = [
                self.instances[w]
                for w in buckets[seats]
                if self.instances[w].decode.free_kv_tokens >= need
                and self.instances[w].decode.load < 1.0
            ]
            if fits:
                return min(
                    fits, key=lambda i: (i.queue_depth, -i.decode.free_kv_tokens, i.worker_id)
                )
        return None
