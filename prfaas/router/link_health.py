"""Which PD workers the PrfaaS cluster can send KV to right now: one link state per decode worker.

Owner: the router process; one `LinkHealth` on its event loop, built in main.py, read by the
dispatcher's `_route` (an offload whose decode worker's link is down is placed locally, reason
`prfaas_unavailable`) and told of failures by its retry path. It owns its probe tasks.

Lifecycle of one link (PrfaaS -> decode worker D's KV receiver, through D's relay when there is one):
  1. up (the default): nothing is probed, nothing costs;
  2. `report_failure(D)`: a remote prefill towards D failed (relay or D down, or the PrfaaS worker
     itself died); the link is marked down at once, so the very next long request is placed
     locally instead of trying PrfaaS and falling back, and a probe task starts;
  3. the probe runs every `probe_interval_s` (0.5 s): TCP connect to D's KV address as PrfaaS
     senders reach it, then `hold_s` (0.3 s) of silence. A refused connect, or a reset/EOF within
     the hold, is down (a relay whose peer is gone, or that is `down`, accepts and resets at once);
     silence or bytes is up (a live receiver waits for our HELLO). First success -> up again.
A failure the link was not to blame for (the PrfaaS worker died) costs one probe: ~0.3 s down.

Limit: the router probes from the PD datacenter. Where the relays emulate the link (`prfaas up`)
that is the same path; across a real WAN the PrfaaS workers would have to report their reach.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from prfaas.router.registry import WorkerRegistry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LinkHealthConfig:
    probe_interval_s: float = 0.5
    connect_timeout_s: float = 1.0
    hold_s: float = 0.3
    """How long a probe connection must stay open (no reset, no EOF) to count as up."""


async def probe_link(host: str, port: int, config: LinkHealthConfig) -> str | None:
    """None when the KV receiver at host:port is reachable; otherwise why not."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port), config.connect_timeout_s
        )
    except (OSError, TimeoutError) as exc:
        return f"connect failed: {exc!r}"
    try:
        data = await asyncio.wait_for(reader.read(1), config.hold_s)
        return None if data else "closed at once (relay down or its peer gone)"
    except TimeoutError:
        return None
    except OSError as exc:
        return f"reset at once: {exc!r}"
    finally:
        writer.transport.abort()


class LinkHealth:
    def __init__(self, registry: WorkerRegistry, config: LinkHealthConfig | None = None) -> None:
        self.registry = registry
        self.config = config or LinkHealthConfig()
        # Decode worker id -> why its link is down; absent means up.
        self.down: dict[str, str] = {}
        self._probes: dict[str, asyncio.Task[None]] = {}

    def usable(self, decode_worker: str | None) -> bool:
        """Whether an offload may send KV to `decode_worker` now."""
        return decode_worker not in self.down

    def report_failure(self, decode_worker: str | None, detail: str) -> None:
        """A remote prefill towards `decode_worker` failed: down until a probe says otherwise."""
        if decode_worker is None or decode_worker in self.down:
            return
        handle = self.registry.get(decode_worker)
        if handle is None:
            return
        host, port = handle.kv_destination("prefill")
        self.down[decode_worker] = detail
        log.warning("link to %s (%s:%d) marked down: %s", decode_worker, host, port, detail)
        task = asyncio.get_running_loop().create_task(
            self._probe_until_up(decode_worker, host, port), name=f"link-probe-{decode_worker}"
        )
        self._probes[decode_worker] = task

    async def _probe_until_up(self, worker_id: str, host: str, port: int) -> None:
        try:
            while (reason := await probe_link(host, port, self.config)) is not None:
                self.down[worker_id] = reason
                await asyncio.sleep(self.config.probe_interval_s)
            log.info("link to %s (%s:%d) is up again", worker_id, host, port)
        finally:
            self.down.pop(worker_id, None)
            self._probes.pop(worker_id, None)

    async def close(self) -> None:
        """Cancel the probes (router shutdown)."""
        tasks = list(self._probes.values())
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)
