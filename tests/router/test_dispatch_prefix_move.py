"""Dispatcher's cross-cluster prefix move (paper §2.3) over fake gRPC workers.

With abundant bandwidth and the longest cache in the PrfaaS cluster, a short-enough request stays
local and the dispatcher first moves the cache: ImportPrefix on the local prefill worker, then
ExportPrefix on the holder towards the target's KV address as the holder reaches it (the link).
A failed move is counted and the request still completes.
"""

from __future__ import annotations

import asyncio

import grpc
import pytest
from fake_workers import FakeCluster, FakePDWorker, FakePrefillWorker, _Base, start_cluster
from prometheus_client import CollectorRegistry
from test_dispatch_routing import run

from prfaas._proto.prfaas.v1 import worker_pb2
from prfaas.metrics import RouterMetrics
from prfaas.router.policy import Reason, Target
from prfaas.router.prefix_index import block_hashes
from prfaas.router.prefix_move import prefix_to_move


async def _import(self: FakePDWorker, request: worker_pb2.ImportPrefixRequest, context):  # noqa: ANN001
    self.imports = [*getattr(self, "imports", []), request]
    fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    for addr in self.kv_addresses:
        self.hub.receivers.setdefault(addr, {})[request.transfer_id] = fut
    yield worker_pb2.ImportPrefixEvent(admitted=worker_pb2.Admitted())
    try:
        n = await asyncio.wait_for(fut, request.deadline_seconds)
    except TimeoutError:
        err = worker_pb2.WorkerError(code="kv_transfer_failed", message="deadline")
        yield worker_pb2.ImportPrefixEvent(error=err)
        return
    yield worker_pb2.ImportPrefixEvent(done=worker_pb2.PrefixImported(num_tokens=n))


async def _export(self: _Base, request: worker_pb2.ExportPrefixRequest, context):  # noqa: ANN001
    self.exports = [*getattr(self, "exports", []), request]
    if getattr(self, "export_mode", "ok") == "fail":
        await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "not_cached: scripted")
    dest = request.destination
    waiting = self.hub.receivers.get(f"{dest.host}:{dest.port}", {}).pop(dest.transfer_id, None)
    if waiting is None:
        await context.abort(grpc.StatusCode.ABORTED, "kv_transfer_failed: unknown transfer")
    waiting.set_result(len(request.token_ids))
    return worker_pb2.ExportPrefixResult(
        num_tokens=len(request.token_ids), bytes_sent=1000 * len(request.token_ids)
    )


@pytest.fixture
def prefix_rpcs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(FakePDWorker, "ImportPrefix", _import, raising=False)
    monkeypatch.setattr(FakePrefillWorker, "ExportPrefix", _export, raising=False)


async def _abundant_with_remote_cache(prompt: list[int]) -> tuple[FakeCluster, CollectorRegistry]:
    c = await start_cluster(threshold=64)
    reg = CollectorRegistry()
    c.dispatcher.metrics = RouterMetrics(reg, "fake")
    c.dispatcher.short.scarce = False
    c.worker("prfaas-0").store_blocks(block_hashes(prompt, 16)[:10])  # 160 tokens remote
    for _ in range(200):
        if c.registry.index.match_tokens(prompt).cluster_tokens("prfaas") == 160:
            break
        await asyncio.sleep(0.01)
    return c, reg


def _moves(reg: CollectorRegistry, outcome: str) -> float:
    return reg.get_sample_value("prfaas_prefix_transfers_total", {"outcome": outcome}) or 0.0


@pytest.mark.usefixtures("prefix_rpcs")
async def test_remote_cache_is_moved_into_the_local_prefill_worker() -> None:
    prompt = list(range(200))
    c, reg = await _abundant_with_remote_cache(prompt)
    try:
        _, (d,), tokens, fin = await run(c, prompt)
        assert (d.target, d.reason, d.cached_tokens) == (Target.LOCAL, Reason.PREFIX_HIT, 160)
        assert d.cross_cluster_transfer and d.cache_source_worker == "prfaas-0"
        (imp,) = c.worker("pd-0").imports  # type: ignore[attr-defined]
        (exp,) = c.worker("prfaas-0").exports  # type: ignore[attr-defined]
        assert list(imp.token_ids) == prompt[:160] and imp.block_size == 16
        assert imp.sender_id == "prfaas-0" and list(exp.token_ids) == prompt[:160]
        # The PrfaaS holder reaches PD-P's receiver through the link address.
        dest = exp.destination
        assert (dest.host, dest.port, dest.transfer_id) == ("10.9.0.0", 7400, imp.transfer_id)
        assert len(tokens) == 4 and fin is not None
        assert _moves(reg, "imported") == 1
        assert reg.get_sample_value("prfaas_prefix_transfer_tokens_total") == 160
        # The holder's reported bytes and the router's wall time of the move are counted too.
        assert reg.get_sample_value("prfaas_prefix_transfer_bytes_total") == 160_000
        seconds = reg.get_sample_value(
            "prfaas_prefix_transfer_seconds_total", {"outcome": "imported"}
        )
        assert seconds is not None and seconds > 0
    finally:
        await c.close()


@pytest.mark.usefixtures("prefix_rpcs")
async def test_failed_move_never_fails_the_request() -> None:
    prompt = list(range(200))
    c, reg = await _abundant_with_remote_cache(prompt)
    try:
        c.worker("prfaas-0").export_mode = "fail"  # type: ignore[attr-defined]
        _, (d,), tokens, fin = await run(c, prompt)
        assert d.cross_cluster_transfer
        assert len(tokens) == 4 and fin is not None and fin.finish_reason == "length"
        assert _moves(reg, "failed") == 1 and _moves(reg, "imported") == 0
    finally:
        await c.close()


async def test_scarce_bandwidth_moves_nothing() -> None:
    prompt = list(range(200))
    c, reg = await _abundant_with_remote_cache(prompt)
    try:
        c.dispatcher.short.scarce = True
        _, (d,), tokens, _ = await run(c, prompt)
        assert not d.cross_cluster_transfer and len(tokens) == 4
        assert _moves(reg, "imported") + _moves(reg, "failed") + _moves(reg, "skipped") == 0
    finally:
        await c.close()


def test_prefix_to_move_takes_whole_blocks_leaving_one_token() -> None:
    assert prefix_to_move(list(range(200)), 160, 16) == list(range(160))
    assert prefix_to_move(list(range(64)), 64, 16) == list(range(48))
    assert prefix_to_move(list(range(10)), 9, 16) == []
