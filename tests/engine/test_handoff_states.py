"""decode_only (WAITING_FOR_KV) and prefill_only (held until release) lifecycles."""

from __future__ import annotations

import pytest
from engine_helpers import expected_tokens, make_engine, make_req, run_until_idle

from prfaas.engine.outputs import RequestEvent
from prfaas.request import RequestKind, RequestStatus


def test_decode_only_ready_then_decodes(engine):
    req = make_req("d", 100, max_tokens=4, kind=RequestKind.DECODE_ONLY)
    engine.add_request(req)
    assert req.status is RequestStatus.WAITING_FOR_KV
    # 100 prompt + 3 fed outputs = 103 positions = 2 blocks, preallocated, plus the live slot.
    assert len(req.block_table) == 2 and req.state_slot is not None
    outs = engine.step()
    assert [(o.request_id, o.event) for o in outs] == [("d", RequestEvent.PREALLOCATED)]
    assert not engine.has_work
    first = expected_tokens(req.prompt_token_ids, 1)[0]
    engine.mark_kv_ready("d", first)
    outs = run_until_idle(engine)
    assert [t for o in outs for t in o.new_token_ids] == expected_tokens(req.prompt_token_ids, 4)
    assert outs[-1].finished and req.status is RequestStatus.FINISHED_LENGTH


def test_decode_only_first_token_can_finish(engine):
    req = make_req("d", 10, max_tokens=1, kind=RequestKind.DECODE_ONLY)
    engine.add_request(req)
    engine.mark_kv_ready("d", 7)
    outs = run_until_idle(engine)
    assert outs[-1].new_token_ids == [7] and outs[-1].status is RequestStatus.FINISHED_LENGTH


def test_decode_only_failed_and_aborted_free_everything(engine):
    a = make_req("a", 100, kind=RequestKind.DECODE_ONLY)
    b = make_req("b", 100, kind=RequestKind.DECODE_ONLY)
    engine.add_request(a)
    engine.add_request(b)
    engine.mark_kv_failed("a", "connection reset")
    engine.abort("b")
    outs = run_until_idle(engine)
    final = {o.request_id: o for o in outs if o.finished}
    assert final["a"].status is RequestStatus.FAILED and final["a"].error == "connection reset"
    assert final["b"].status is RequestStatus.FINISHED_ABORTED


def test_decode_only_preallocation_waits_for_room():
    eng = make_engine(entries=4, enable_prefix_cache=False)
    first = make_req("first", 100, max_tokens=2)
    eng.add_request(first)
    eng.step()
    late = make_req("late", 100, kind=RequestKind.DECODE_ONLY)
    eng.add_request(late)
    assert late.status is RequestStatus.WAITING
    with pytest.raises(AssertionError, match="not preallocated"):
        eng.receive_segments("late")
    outs = run_until_idle(eng)
    assert late.status is RequestStatus.WAITING_FOR_KV
    assert ("late", RequestEvent.PREALLOCATED) in [(o.request_id, o.event) for o in outs]
    eng.abort("late")
    run_until_idle(eng)
    eng.assert_no_leaks()


def test_prefill_only_holds_cache_until_release(engine):
    req = make_req("p", 150, max_tokens=16, kind=RequestKind.PREFILL_ONLY)
    engine.add_request(req)
    outs = run_until_idle(engine)
    assert len(outs) == 1 and outs[0].cache_held and outs[0].finished
    assert outs[0].new_token_ids == expected_tokens(req.prompt_token_ids, 1)
    # Prompt only (150 tokens = 3 blocks), still referenced after finishing.
    assert len(req.block_table) == 3
    assert all(engine.pool.block_refs[b] == 1 for b in req.block_table)
    assert engine.layer_segments("p", 0, 0, 150) == []
    engine.release("p")
    with pytest.raises(KeyError):
        engine.release("p")


def test_abort_of_held_prefill_only_releases(engine):
    req = make_req("p", 70, kind=RequestKind.PREFILL_ONLY)
    engine.add_request(req)
    run_until_idle(engine)
    assert engine.abort("p")
    assert req.status is RequestStatus.FINISHED_STOPPED


def test_decode_seats_are_taken_when_kv_arrives_not_while_prefill_waits():
    """BS_max counts the running batch: more decode_only requests than max_num_seqs preallocate
    (memory allows) while their prefills wait elsewhere; KV that arrives with every seat taken
    emits its first token, waits in kv_ready, and decodes once a seat frees."""
    eng = make_engine(max_num_seqs=2, enable_prefix_cache=False)
    reqs = [make_req(f"d{i}", 50, max_tokens=3, kind=RequestKind.DECODE_ONLY) for i in range(3)]
    for req in reqs:
        eng.add_request(req)
    eng.step()
    assert [r.status for r in reqs] == [RequestStatus.WAITING_FOR_KV] * 3
    for req in reqs:
        eng.mark_kv_ready(req.request_id, 7)
    s = eng.scheduler
    assert [r.request_id for r in s.running] == ["d0", "d1"]
    assert [r.request_id for r in s.kv_ready] == ["d2"]
    assert reqs[2].output_token_ids == [7]
    s.check_invariants()
    # Never more than max_num_seqs decoding in one step.
    while eng.has_work:
        eng.step()
        assert len(s.running) <= 2
    assert all(r.status is RequestStatus.FINISHED_LENGTH for r in reqs)
    assert all(len(r.output_token_ids) == 3 for r in reqs)
    eng.assert_no_leaks()


def test_kv_ready_request_aborted_or_failed_frees_everything():
    eng = make_engine(max_num_seqs=1, enable_prefix_cache=False)
    reqs = [make_req(f"d{i}", 50, max_tokens=5, kind=RequestKind.DECODE_ONLY) for i in range(3)]
    for req in reqs:
        eng.add_request(req)
    eng.step()
    for req in reqs:
        eng.mark_kv_ready(req.request_id, 7)
    assert [r.request_id for r in eng.scheduler.kv_ready] == ["d1", "d2"]
    assert eng.abort("d1")
    assert reqs[1].status is RequestStatus.FINISHED_ABORTED
    eng.scheduler.fail_all("boom")
    assert [reqs[0].status, reqs[2].status] == [RequestStatus.FAILED] * 2
    assert not eng.scheduler.kv_ready and not eng.scheduler.running
    eng.assert_no_leaks()
