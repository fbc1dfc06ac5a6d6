"""ComputeLoop: the one thread that owns a worker's EngineCore.

Lifecycle (one per worker process):
1. The event loop submits work with `call(fn)`: `fn(engine)` runs on the compute thread between
   two engine steps, so the scheduler is never touched by two threads; its result (or exception)
   resolves the awaited future.
2. The compute thread applies queued calls, then runs `engine.step()` while the engine has work,
   and sleeps on the call queue when it has none.
3. Every `RequestOutput` of a step is posted back to the event loop, into the queue of whoever
   subscribed to that request id (`subscribe`), and so is every output an applied call produced
   (before the call's caller resumes). Outputs for unsubscribed ids are dropped.
4. Per-request layer-done callbacks (layer-wise KV streaming) are registered in `layer_hooks` and
   run on the compute thread; they must only hand views to a thread-safe sender.
5. After every step and every batch of applied calls the thread publishes an `EngineSnapshot`
   (`snapshot`): load reports read it without waiting for the engine, so a long step makes a
   worker look busy, never dead.
6. A step that raises fails the requests it carried (the engine's isolation), never the worker:
   the loop goes on with the next step instead of re-running the same batch.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from prfaas.engine.core import EngineCore
from prfaas.engine.outputs import RequestOutput
from prfaas.engine.snapshot import EngineSnapshot

log = logging.getLogger(__name__)
T = TypeVar("T")
LayerHook = Callable[[int, int, int], None]


class LayerHooks:
    """request id -> layer-done hook. Written from the event loop, read on the compute thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hooks: dict[str, LayerHook] = {}

    def register(self, request_id: str, hook: LayerHook) -> None:
        with self._lock:
            self._hooks[request_id] = hook

    def unregister(self, request_id: str) -> None:
        with self._lock:
            self._hooks.pop(request_id, None)

    def __call__(self, request_id: str, layer_idx: int, start: int, end: int) -> None:
        with self._lock:
            hook = self._hooks.get(request_id)
        if hook is not None:
            hook(layer_idx, start, end)

    def __len__(self) -> int:
        with self._lock:
            return len(self._hooks)


class ComputeLoop:
    def __init__(
        self, make_engine: Callable[[LayerHooks], EngineCore], name: str = "compute"
    ) -> None:
        self.layer_hooks = LayerHooks()
        self.engine = make_engine(self.layer_hooks)
        self._calls: queue.SimpleQueue[
            tuple[Callable[[EngineCore], Any], asyncio.Future[Any]] | None
        ]
        self._calls = queue.SimpleQueue()
        self._subscribers: dict[str, asyncio.Queue[RequestOutput]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._stopping = False
        # Replaced (never mutated) by the compute thread; read from any thread.
        self.snapshot = EngineSnapshot.of(self.engine)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread.start()

    async def stop(self) -> None:
        self._stopping = True
        self._calls.put(None)
        await asyncio.to_thread(self._thread.join, 10.0)

    async def call(self, fn: Callable[[EngineCore], T]) -> T:
        """Run `fn(engine)` on the compute thread between steps and return its result."""
        assert self._loop is not None, "start() first"
        future: asyncio.Future[T] = self._loop.create_future()
        self._calls.put((fn, future))
        return await future

    def subscribe(self, request_id: str) -> asyncio.Queue[RequestOutput]:
        outputs: asyncio.Queue[RequestOutput] = asyncio.Queue()
        self._subscribers[request_id] = outputs
        return outputs

    def unsubscribe(self, request_id: str, outputs: asyncio.Queue[RequestOutput]) -> None:
        """Remove `outputs` (only that queue: a newer subscriber under the same id stays)."""
        if self._subscribers.get(request_id) is outputs:
            del self._subscribers[request_id]

    def _deliver(self, outputs: list[RequestOutput]) -> None:
        for out in outputs:
            target = self._subscribers.get(out.request_id)
            if target is not None:
                target.put_nowait(out)

    def _resolve(
        self, future: asyncio.Future[Any], result: Any, error: BaseException | None
    ) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def _apply(self, item: tuple[Callable[[EngineCore], Any], asyncio.Future[Any]]) -> None:
        fn, future = item
        assert self._loop is not None
        try:
            result, error = fn(self.engine), None
        except Exception as exc:  # handed to the awaiting coroutine, never lost
            result, error = None, exc
        # Published before the caller resumes, so a load report read after an awaited call
        # (an abort, a release) already reflects it.
        self._publish()
        # Outputs the call produced (preallocated, a shipped first token, aborted) go out now,
        # not after the next step, and reach subscribers before the caller resumes.
        pending = self.engine.take_pending_outputs()
        if pending:
            self._loop.call_soon_threadsafe(self._deliver, pending)
        self._loop.call_soon_threadsafe(self._resolve, future, result, error)

    def _publish(self) -> None:
        try:
            self.snapshot = EngineSnapshot.of(self.engine, self.snapshot)
        except Exception:  # a report must never stop the compute thread
            log.exception("engine snapshot failed")

    def _run(self) -> None:
        assert self._loop is not None
        while not self._stopping:
            try:
                item = self._calls.get(timeout=None if not self.engine.has_work else 0)
            except queue.Empty:
                item = None
            else:
                if item is None:
                    break
                self._apply(item)
                # Apply every queued call before the next step (aborts take effect promptly).
                while True:
                    try:
                        nxt = self._calls.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None:
                        return
                    self._apply(nxt)
            if not self.engine.has_work:
                continue
            steps_before = self.engine.num_steps
            try:
                outputs = self.engine.step()
            except Exception:
                # The engine fails the requests of a step whose backend raised; an exception that
                # still escapes is a scheduler bug. Never re-run the same batch in a hot loop:
                # fail everything live (owners see a clear error) and keep serving.
                log.exception("engine step failed outside the backend; failing live requests")
                outputs = self.engine.fail_all("internal engine error")
                time.sleep(0.05)
            self._publish()
            if outputs:
                self._loop.call_soon_threadsafe(self._deliver, outputs)
            if self.engine.num_steps == steps_before and not outputs:
                # Work exists but nothing could run (e.g. waiting for memory): wait for a call
                # (an abort, a release) instead of spinning on empty schedules.
                try:
                    item = self._calls.get(timeout=0.005)
                except queue.Empty:
                    continue
                if item is None:
                    break
                self._apply(item)
