"""Decode seats with several router replicas (issue 17 item 3): a router counts the larger of its
own running requests and the worker's reported batch, which includes the other replicas'."""

from __future__ import annotations

from prfaas._proto.prfaas.v1 import worker_pb2
from prfaas.roles import Role
from prfaas.router.registry import WorkerHandle


def _decode_worker(own: int, reported: int) -> WorkerHandle:
    handle = WorkerHandle("pd-1", "pd", "pd", Role.DECODE, "127.0.0.1:1", "127.0.0.1:2")
    handle.healthy = True
    handle.inflight_decodes = own
    handle.load = worker_pb2.WorkerLoad(max_num_seqs=8, num_running=reported)
    return handle


def test_seats_count_other_replicas_requests_from_the_report() -> None:
    assert _decode_worker(own=2, reported=8).snapshot().seats_taken == 1.0  # full: others' 6
    assert _decode_worker(own=2, reported=5).snapshot().seats_taken == 5 / 8


def test_own_requests_count_before_the_report_catches_up() -> None:
    # A poll old: the report does not show what this router placed since.
    assert _decode_worker(own=6, reported=1).snapshot().seats_taken == 6 / 8


def test_own_seats_given_back_since_the_report_are_free_at_once() -> None:
    import time

    handle = _decode_worker(own=1, reported=8)  # full, by the other replica and this one
    handle.load_reported(handle.load, time.monotonic())
    handle.seat_change(-1)  # one of this router's requests counted in the report finished
    assert handle.snapshot().seats_taken == 7 / 8  # free now, not a poll later
    handle.seat_change(+1)
    handle.seat_change(+1)  # seated after the report was asked: not in it
    assert handle.snapshot().seats_taken == 9 / 8
    # A new report covers every change before it was asked.
    handle.load_reported(worker_pb2.WorkerLoad(max_num_seqs=8, num_running=5), time.monotonic())
    assert handle.snapshot().seats_taken == 5 / 8


def test_bench_admission_split_over_two_routers_fails_nothing() -> None:
    import asyncio

    from prfaas.tools.benchmarks.router_replicas import measure_admission

    run = asyncio.run(measure_admission(2, max_num_seqs=4, hold_s=0.05, duration_s=1.0))
    # 8 callers on 4 seats through two routers: the worker may queue past its seats (the report
    # is one poll old) or a router refuses (429, retried), but no request fails.
    assert run.failed == [] and run.finished > 0
    assert run.peak_running > 0 and run.admissions == run.finished
