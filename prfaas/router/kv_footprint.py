"""The KV bytes per prompt token of this deployment: the router's one owner of that number.

Everything in the router that turns tokens into link bytes reads it here: the remote prefill
deadline and a prefix move's deadline (dispatcher), the KV committed to the link (short-term
control) and S_kv of the long-term planner's model. Sources, best first:
  1. reported: what the workers say they ship (`WorkerLoad.kv_bytes_per_token`, `kv_state_bytes`:
     their backend's layout, KV compression applied) — the PrfaaS workers' first, since their KV
     is what crosses the link; exact from the first heartbeat;
  2. measured: an EWMA of bytes sent per prompt token of completed transfers (workers too old to
     report; it counts the per-request state into the per-token figure);
  3. the configured default.
A profile's KV column is none of these: an emulated deployment ships the profile's bytes times a
byte factor (÷1000 in deploy/local.toml), and a planner fed the profile's 17 KB/token planned
for a link 1000× tighter than it was (issue 12, the phased run).
"""

from __future__ import annotations

from prfaas.router.registry import WorkerRegistry

MEASURED_EWMA_WEIGHT = 0.2
"""Weight of the newest completed transfer in the measured bytes-per-token EWMA."""


class KvFootprint:
    def __init__(
        self, registry: WorkerRegistry, link_cluster: str, default_bytes_per_token: float
    ) -> None:
        self.registry = registry
        self.link_cluster = link_cluster
        """The cluster whose workers ship KV over the link (the PrfaaS cluster): read first."""
        self.default_bytes_per_token = default_bytes_per_token
        self._measured: float | None = None

    def reported(self) -> tuple[float, float] | None:
        """(bytes per token, state bytes per request) a healthy worker reports, the link
        cluster's first; None when none reports (too old, or none has answered yet)."""
        workers = self.registry.healthy(self.link_cluster) + self.registry.healthy()
        for h in workers:
            if h.load is not None and h.load.kv_bytes_per_token > 0:
                return h.load.kv_bytes_per_token, float(h.load.kv_state_bytes)
        return None

    def current(self) -> tuple[float, float]:
        """(bytes per token, state bytes per request) from the best source; the state is 0 unless
        reported (the measured figure folds it into the per-token one)."""
        reported = self.reported()
        if reported is not None:
            return reported
        measured = self._measured
        return (self.default_bytes_per_token if measured is None else measured), 0.0

    @property
    def source(self) -> str:
        """reported | measured | default."""
        if self.reported() is not None:
            return "reported"
        return "default" if self._measured is None else "measured"

    @property
    def bytes_per_token(self) -> float:
        return self.current()[0]

    @property
    def state_bytes(self) -> float:
        """Per-request state bytes (0 unless reported: the measured figure folds them in)."""
        return self.current()[1]

    def bytes_for(self, num_tokens: float) -> float:
        """KV bytes a prefill of `num_tokens` prompt tokens ships."""
        bpt, state = self.current()
        return state + num_tokens * bpt

    def observe_transfer(self, num_bytes: int, num_tokens: int) -> None:
        """A completed transfer: fold its bytes per prompt token into the measured figure."""
        if num_bytes <= 0 or num_tokens <= 0:
            return
        sample = num_bytes / num_tokens
        if self._measured is None:
            self._measured = sample
        else:
            self._measured += MEASURED_EWMA_WEIGHT * (sample - self._measured)

    def committed(self) -> dict[str, float]:
        """KV bytes of the offloads this router has in flight on each link-cluster worker (queued,
        computing, in the sender or on the wire: not yet complete at their decode worker), from
        its own counts (`WorkerHandle.inflight_prefill_tokens`). Every such worker is read, dead
        or alive: a dead worker's offloads are retried elsewhere."""
        bpt, state = self.current()
        return {
            h.worker_id: h.inflight_prefill_tokens * bpt + h.inflight_prefills * state
            for h in self.registry.workers.values()
            if h.cluster == self.link_cluster
        }

    def ahead_on_link(self) -> float:
        """KV bytes the link must carry before KV committed now: the router's committed count,
        or the senders' reported backlog (`WorkerLoad.kv_queued_bytes`) when that is larger."""
        queued = sum(
            h.load.kv_queued_bytes for h in self.registry.healthy(self.link_cluster) if h.load
        )
        return max(sum(self.committed().values()), float(queued))
