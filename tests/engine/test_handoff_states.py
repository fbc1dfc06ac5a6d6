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


def test_decode_seats_are_capped_by_max_num_seqs_including_waiting_for_kv():
    """BS_max holds on a decode worker: a preallocated request takes a seat before its KV
    arrives, so more decode_only requests than max_num_seqs wait instead of overfilling."""
    eng = make_engine(max_num_seqs=2, enable_prefix_cache=False)
    reqs = [make_req(f"d{i}", 50, max_tokens=3, kind=RequestKind.DECODE_ONLY) for i in range(3)]
    for req in reqs:
        eng.add_request(req)
    eng.step()
    assert [r.status for r in reqs] == [
        RequestStatus.WAITING_FOR_KV,
        RequestStatus.WAITING_FOR_KV,
        RequestStatus.WAITING,
    ]
    eng.mark_kv_ready("d0", 7)
    eng.mark_kv_ready("d1", 7)
    run_until_idle(eng)
    # Seats freed: the third is preallocated, then decodes to completion.
    assert reqs[2].status is RequestStatus.WAITING_FOR_KV
    eng.mark_kv_ready("d2", 7)
    run_until_idle(eng)
    assert all(r.status is RequestStatus.FINISHED_LENGTH for r in reqs)
    eng.assert_no_leaks()
