"""The worker list handed to `route()`: every worker for small deployments, and at scale a
pruned list that makes `route()` decide exactly as it would on every worker.

Why exact: `route()` picks a prefill worker among those within `affinity_queue_slack` of the
shortest queue by (longest usable prefix, queue, load, id) and a decode worker by (load, queue,
-free KV, id) among those with room; it tests "PrfaaS full" as "every queue at the cap". So per
cluster it needs only: every worker holding a usable prefix of the request, the best worker by
(queue, load, id) (the answer when no prefix decides; its queue is the shortest, which also
settles the cap test), and the best decode worker with room. Prefill workers sit in buckets by
queue depth, each a sorted list of ids (the best is the lowest bucket's first); decode workers in
buckets by (requests placed, queue), each sorted by (-free KV, id): the first entry with a free
seat is the bucket's answer, and the first without KV room ends the bucket. A decision costs
O(buckets) (and the full-seat entries it skips), not a scan of 1,250 workers (at 10,000 GPUs the
scan was half the run time).
`tests/sim/test_candidates.py` checks the decisions agree with the full list on random states.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable

from prfaas.router.policy import WorkerSnapshot
from prfaas.router.prefix_index import PrefixMatch
from prfaas.tools.sim.instance import SimInstance

FULL_LIST_UP_TO = 32
"""Below this many workers `route()` gets all of them (cheap, and obviously the real input)."""

_Key = tuple[int, int]
_Entry = tuple[int, str]


class CandidateView:
    def __init__(self, instances: Iterable[SimInstance], prune: bool | None = None) -> None:
        self.instances = {i.worker_id: i for i in instances}
        self.prune = len(self.instances) > FULL_LIST_UP_TO if prune is None else prune
        # (cluster, "p"|"d") -> bucket key -> sorted entries: prefill ("", id) by queue depth,
        # decode (-free KV tokens, id) by (requests placed, queue depth).
        self._buckets: dict[tuple[str, str], dict[_Key, list[_Entry]]] = {}
        self._where: dict[str, tuple[tuple[str, str], _Key, _Entry] | None] = {}
        for inst in self.instances.values():
            self._where[inst.worker_id] = None
            self.update(inst)
            inst.on_change = self.update

    def update(self, inst: SimInstance) -> None:
        wid = inst.worker_id
        old = self._where.get(wid)
        new: tuple[tuple[str, str], _Key, _Entry] | None = None
        if not inst.draining:
            if inst.is_prefill:
                new = ((inst.cluster, "p"), (inst.queue_depth, 0), (0, wid))
            else:
                d = inst.decode
                new = (
                    (inst.cluster, "d"),
                    (d.reserved, d.waiting_for_kv),
                    (-d.free_kv_tokens, wid),
                )
        if new == old:
            return
        if old is not None:
            buckets = self._buckets[old[0]]
            bucket = buckets[old[1]]
            del bucket[bisect_left(bucket, old[2])]
            if not bucket:
                del buckets[old[1]]
        if new is not None:
            insort(self._buckets.setdefault(new[0], {}).setdefault(new[1], []), new[2])
        self._where[wid] = new

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
                wid = buckets[min(buckets)][0][1]
                chosen[wid] = self.instances[wid]
            else:
                best = self._best_decode(buckets, need_kv_tokens)
                if best is not None:
                    chosen[best.worker_id] = best
        return [i.snapshot() for i in chosen.values()]

    def _best_decode(self, buckets: dict[_Key, list[_Entry]], need: int) -> SimInstance | None:
        # Buckets in (placed, queue) order = route()'s (load, queue) order (one max_batch per
        # cluster); a bucket's entries run from the most free KV down, so the first without room
        # ends the bucket; before it, the first with a free seat is route()'s choice.
        for key in sorted(buckets):
            for neg_free, wid in buckets[key]:
                if -neg_free < need:
                    break
                inst = self.instances[wid]
                if inst.decode.seats_taken < 1.0:
                    return inst
        return None
