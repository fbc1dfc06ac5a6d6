"""WorkerRuntime: everything one worker process owns, shared by both worker kinds.

Owns: the backend and its EngineCore (through the ComputeLoop thread), the KV sender (prefill side)
and receiver (decode side), the cache-event hub, live request tasks (for Abort), counters for load
reports, and the Prometheus registry. Services translate protos and call into it; nothing here
imports generated proto code.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry

from prfaas.engine.snapshot import EngineSnapshot
from prfaas.kvtransfer.tcp_receiver import TcpReceiver
from prfaas.kvtransfer.tcp_sender import TcpSender
from prfaas.kvtransfer.telemetry import (
    LINE_SAMPLE_S,
    LineBusyMeter,
    line_backlog_bytes,
    link_delivery_rate,
    sending_connections,
)
from prfaas.metrics import TransferMetrics, WorkerMetrics
from prfaas.metrics.stats import LinkStats, TransferStats, WorkerStats
from prfaas.worker.cache_events import CacheEventHub
from prfaas.worker.compute import ComputeLoop
from prfaas.worker.options import (
    WorkerOptions,
    WorkerSecurity,
    build_backend,
    build_engine,
    served_model_name,
)
from prfaas.worker.prefill_flow import wire_footprint
from prfaas.worker.prefill_lengths import PrefillLengths
from prfaas.worker.warmup import warm_up

log = logging.getLogger(__name__)
T = TypeVar("T")


class RequestAborted(Exception):
    """The request was aborted through the Abort RPC."""


@dataclass
class Counters:
    """Cumulative counters for load reports; updated on the event loop only."""

    prefill_tokens: int = 0
    prefill_seconds: float = 0.0
    decode_tokens: int = 0
    # Bytes of completed outgoing KV transfers (live bytes on the wire: `kv_bytes_on_wire`).
    kv_bytes_sent: int = 0
    # Completed prefills by uncached length (`WorkerLoad.prefill_length_*`).
    prefill_lengths: PrefillLengths = field(default_factory=PrefillLengths)


class RateMeter:
    """Per-second rate of a cumulative count, over windows of at least `window_s` (between two
    samples closer than that the previous rate is repeated). Never negative: a count that drops
    (a dropped peer link takes its bytes with it) restarts the window."""

    def __init__(self, window_s: float = 0.5) -> None:
        self.window_s = window_s
        self._mark: tuple[float, float] | None = None
        self.rate = 0.0

    def sample(self, count: float) -> float:
        now = time.monotonic()
        if self._mark is None:
            self._mark = (now, count)
        then, before = self._mark
        if now - then >= self.window_s:
            self.rate = max(0.0, (count - before) / (now - then))
            self._mark = (now, count)
        return self.rate


class WorkerRuntime:
    def __init__(
        self, options: WorkerOptions, security: WorkerSecurity, *, receives_kv: bool
    ) -> None:
        self.options = options
        self.security = security
        self.worker_id = options.worker_id
        self.cluster = options.cluster
        self.backend, self.eos_token_id, self.max_context = build_backend(options)
        self.model_name = served_model_name(options)
        # (KV bytes per prompt token, state bytes per request) as shipped, for load reports.
        self.kv_footprint = wire_footprint(self.backend, options.kv_compression)
        self.hub = CacheEventHub()
        self.compute = ComputeLoop(
            lambda hooks: build_engine(
                options, self.backend, self.max_context, hooks, self.hub.listener
            ),
            name=f"compute-{self.worker_id}",
        )
        self.receives_kv = receives_kv
        self.sender: TcpSender | None = None
        self.receiver: TcpReceiver | None = None
        # request id -> the task doing its work (Abort cancels it); ids aborted by Abort.
        self.active: dict[str, asyncio.Future[Any]] = {}
        self._aborted: set[str] = set()
        self.counters = Counters()
        self.registry = CollectorRegistry()
        self.worker_metrics = WorkerMetrics(self.registry, self.cluster)
        self.transfer_metrics = TransferMetrics(self.registry)
        self._busy_mark = (time.monotonic(), 0.0)
        self._egress = RateMeter()
        self._decode = RateMeter()
        self._retrans_seen: dict[str, int] = {}
        # Cumulative TCP statistics of the KV connections (for load reports).
        self.kv_segments_sent = 0
        self.kv_segments_retransmitted = 0
        self.kv_rtt_seconds = 0.0
        # Kernel delivery rate of the KV connections sending at the latest sample (bytes/s).
        self.kv_delivery_bytes_per_s = 0.0
        # KV connections with data in flight at the latest sample (of the peers that sent).
        self.kv_sending_connections = 0
        self._bytes_seen: dict[str, int] = {}
        # What this sender put on the line per wall-clock bucket, sampled every
        # `LINE_SAMPLE_S` (the router reads the line's rate from every worker's).
        self.line_busy = LineBusyMeter()
        self._telemetry_task: asyncio.Task[None] | None = None
        self._line_busy_task: asyncio.Task[None] | None = None

    @property
    def block_size(self) -> int:
        return self.backend.block_size

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.hub.bind(loop)
        self.compute.start()
        await warm_up(self.compute, self.block_size)
        self.sender = TcpSender(
            secret=self.security.kv_secret,
            ssl_context=self.security.kv_sender_ssl,
            identity=self.worker_id,
            num_connections=self.options.kv_connections,
            chunk_mib=self.options.kv_chunk_mib,
        )
        if self.receives_kv:
            self.receiver = TcpReceiver(
                self.options.host, self.options.kv_port, secret=self.security.kv_secret,
                identity=self.worker_id, ssl_context=self.security.kv_receiver_ssl,
            )  # fmt: skip
            await self.receiver.start()
        self._telemetry_task = loop.create_task(self._sample_links())
        self._line_busy_task = loop.create_task(self._sample_line_busy())

    async def _sample_line_busy(self) -> None:
        """Feed `line_busy` every `LINE_SAMPLE_S`, and only while a transfer is open: an
        idle sender has no backlog to time (and costs no TCP_INFO calls)."""
        while True:
            await asyncio.sleep(LINE_SAMPLE_S)
            assert self.sender is not None
            peers = self.sender.snapshot() if self.sender.has_open_transfers() else []
            self.line_busy.observe(time.time(), peers)  # wall clock: buckets every worker shares

    async def _sample_links(self, period_s: float = 1.0) -> None:
        """Export each KV peer's goodput, utilization, RTT and retransmits (TCP_INFO) every period:
        the congestion signals the router's short-timescale control reads (paper §4)."""
        capacity = self.options.link_gbps * 1e9 / 8
        while True:
            await asyncio.sleep(period_s)
            assert self.sender is not None
            peers = self.sender.snapshot()
            self.kv_delivery_bytes_per_s = link_delivery_rate(peers, self._bytes_seen)
            self.kv_sending_connections = sending_connections(peers, self._bytes_seen)
            for peer in peers:
                infos = [t for t in peer.tcp if t is not None]
                rtt = sum(t.rtt_us for t in infos) / len(infos) / 1e6 if infos else 0.0
                retrans = sum(t.total_retrans for t in infos)
                delta = max(0, retrans - self._retrans_seen.get(peer.peer, 0))
                self._retrans_seen[peer.peer] = retrans
                mss = max((t.snd_mss for t in infos), default=0) or 1448
                sent = max(0, peer.bytes_sent - self._bytes_seen.get(peer.peer, 0))
                self._bytes_seen[peer.peer] = peer.bytes_sent
                self.kv_segments_sent += sent // mss
                self.kv_segments_retransmitted += delta
                if infos:
                    self.kv_rtt_seconds = rtt
                self.transfer_metrics.record_link(
                    LinkStats(
                        peer.peer,
                        peer.goodput_bytes_per_s,
                        peer.goodput_bytes_per_s / capacity if capacity else 0.0,
                        rtt,
                        delta,
                        peer.bytes_in_flight,
                        peer.queued_bytes,
                    )
                )

    async def stop(self) -> None:
        for sampler in (self._telemetry_task, self._line_busy_task):
            if sampler is not None:
                sampler.cancel()
        for task in list(self.active.values()):
            task.cancel()
        if self.active:
            await asyncio.wait(list(self.active.values()), timeout=5.0)
        self.hub.close()
        if self.sender is not None:
            await self.sender.close()
        if self.receiver is not None:
            await self.receiver.close()
        await self.compute.stop()

    async def run_abortable(self, request_id: str, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` as the owner of `request_id`: Abort(request_id) cancels it and this raises
        RequestAborted, so the RPC still ends with a status instead of being torn down mid-call.
        Cancelling the caller (client gone) cancels `coro` too. ValueError on a duplicate id."""
        if request_id in self.active:
            coro.close()
            raise ValueError(f"duplicate request id {request_id}")
        task = asyncio.ensure_future(coro)
        self.active[request_id] = task
        try:
            return await task
        except asyncio.CancelledError:
            if request_id in self._aborted and task.cancelled():
                raise RequestAborted(request_id) from None
            raise
        finally:
            self._forget(request_id, task)

    async def stream_abortable(self, request_id: str, events: AsyncIterator[T]) -> AsyncIterator[T]:
        """The async-generator form of `run_abortable`: yields `events`' items; after
        Abort(request_id) the generator is closed (its cleanup runs) and RequestAborted raised."""
        if request_id in self.active:
            raise ValueError(f"duplicate request id {request_id}")
        # Each item boxed in a 1-tuple; None marks the end (an item may itself be None).
        queue: asyncio.Queue[tuple[T] | None] = asyncio.Queue()

        async def pump() -> None:
            try:
                async for item in events:
                    queue.put_nowait((item,))
            finally:
                queue.put_nowait(None)

        task = asyncio.ensure_future(pump())
        self.active[request_id] = task
        try:
            while (boxed := await queue.get()) is not None:
                yield boxed[0]
            if task.cancelled() and request_id in self._aborted:
                raise RequestAborted(request_id)
            task.result()
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            self._forget(request_id, task)

    def _forget(self, request_id: str, task: asyncio.Future[Any]) -> None:
        if self.active.get(request_id) is task:
            del self.active[request_id]
            self._aborted.discard(request_id)

    def abort(self, request_id: str) -> bool:
        """Cancel the work that owns `request_id`; False if nothing does (finished or unknown)."""
        task = self.active.get(request_id)
        if task is None or task.done():
            return False
        self._aborted.add(request_id)
        task.cancel()
        return True

    def record_sent(self, link: str, num_bytes: int, duration_s: float, exposed_s: float) -> None:
        self.counters.kv_bytes_sent += num_bytes
        self.transfer_metrics.record_transfer(
            TransferStats(link, "sent", num_bytes, duration_s, exposed_s)
        )

    def record_received(self, link: str, num_bytes: int, duration_s: float) -> None:
        self.transfer_metrics.record_transfer(
            TransferStats(link, "received", num_bytes, duration_s, 0.0)
        )

    def busy_fraction(self) -> float:
        """Fraction of wall time the compute thread spent executing since the previous call."""
        now, busy = time.monotonic(), self.compute.engine.busy_seconds
        then, busy_then = self._busy_mark
        self._busy_mark = (now, busy)
        return min(1.0, (busy - busy_then) / max(1e-6, now - then))

    def kv_bytes_on_wire(self) -> int:
        """Bytes the KV sender has written to its sockets so far (live, unlike counters that
        count a transfer only once it completes: a transfer slowed by a cut link moves bytes for
        tens of seconds before it completes)."""
        assert self.sender is not None
        return sum(peer.bytes_sent for peer in self.sender.snapshot())

    def kv_queued_bytes(self) -> int:
        """KV bytes waiting for the line (`kvtransfer.telemetry.line_backlog_bytes`)."""
        assert self.sender is not None
        return line_backlog_bytes(self.sender.snapshot())

    def egress_rate(self) -> float:
        """KV bytes/s this worker put on the wire recently."""
        return self._egress.sample(self.kv_bytes_on_wire())

    def decode_rate(self) -> float:
        """Tokens/s this worker generated recently."""
        return self._decode.sample(self.counters.decode_tokens)

    def leak_report(self) -> tuple[int, int, str]:
        """(live requests, open transfers, report): the report is empty when nothing is held.
        Reads the compute thread's latest snapshot: never waits for an engine step."""
        snap = self.compute.snapshot
        transfer_counts: dict[str, int] = {}
        for name, part in (("sender", self.sender), ("receiver", self.receiver)):
            if part is not None:
                for key, value in part.leak_check().items():
                    transfer_counts[f"{name}.{key}"] = value
        # Pooled connections are reused across transfers by design; everything else must be zero.
        held = {k: v for k, v in transfer_counts.items() if v and not k.endswith("connections")}
        open_transfers = sum(v for k, v in transfer_counts.items() if "transfer" in k)
        parts = [snap.leak_report] if snap.leak_report else []
        if held:
            parts.append(f"transfer state held: {held}")
        if self.active:
            parts.append(f"{len(self.active)} request tasks alive")
        return snap.num_live, open_transfers, "; ".join(parts)

    def queue_state(self) -> EngineSnapshot:
        """The engine's queues and cache usage after its latest step (no wait for the engine)."""
        snap = self.compute.snapshot
        self.worker_metrics.record_step(
            WorkerStats(self.worker_id, snap.num_running, snap.num_waiting, snap.cache_usage)
        )
        return snap
