"""The real scheduler driven through EngineCore with the instant NullBackend."""

from __future__ import annotations

import pytest
from engine_helpers import BLOCK, expected_tokens, make_engine, make_req, run_until_idle

from prfaas.engine.core import generate
from prfaas.engine.scheduler import RequestRefused
from prfaas.request import RequestStatus
from prfaas.sampling import SamplingParams


def test_generate_many_prompts(engine):
    prompts = [list(range(n)) for n in (1, 63, 64, 65, 200, 300)]
    params = SamplingParams(temperature=0.0, max_tokens=5)
    outs = generate(engine, prompts, params)
    assert outs == [expected_tokens(p, 5) for p in prompts]


def test_chunked_prefill_does_not_stall_decodes():
    eng = make_engine(entries=64, max_num_batched_tokens=128, enable_prefix_cache=False)
    short = make_req("short", 10, max_tokens=20)
    eng.add_request(short)
    eng.step()  # prefill of the short prompt; it now decodes
    long = make_req("long", 1000, max_tokens=2)
    eng.add_request(long)
    chunks = []
    while not long.is_prefill_done:
        before = short.num_output_tokens
        sched = eng.scheduler.schedule()
        assert [d.request for d in sched.decodes] == [short]
        assert sched.num_scheduled_tokens <= 128
        result = eng.backend.execute(sched)
        eng.scheduler.update(sched, result)
        assert short.num_output_tokens == before + 1
        chunks += [(c.start, c.end) for c in sched.prefills]
    # 127 tokens left after the decode: one aligned block per step, then the 104-token tail.
    assert chunks == [(i, i + BLOCK) for i in range(0, 896, BLOCK)] + [(896, 1000)]
    run_until_idle(eng)
    assert long.output_token_ids == expected_tokens(long.prompt_token_ids, 2)
    assert short.output_token_ids == expected_tokens(short.prompt_token_ids, 20)
    eng.assert_no_leaks()


def test_admission_waits_for_memory_then_runs():
    # Each request needs 2 blocks + 1 slot = 3 entries; the budget holds 4.
    eng = make_engine(entries=4, enable_prefix_cache=False)
    a, b = make_req("a", 100, max_tokens=3), make_req("b", 100, max_tokens=3)
    eng.add_request(a)
    eng.add_request(b)
    eng.step()
    assert a.status is RequestStatus.RUNNING and b.status is RequestStatus.WAITING
    run_until_idle(eng)
    assert a.output_token_ids == b.output_token_ids == expected_tokens(a.prompt_token_ids, 3)
    eng.assert_no_leaks()


def test_refuses_what_can_never_fit():
    eng = make_engine(entries=4, max_model_len=1000)
    with pytest.raises(RequestRefused, match="cache budget"):
        eng.add_request(make_req("big", 300))
    with pytest.raises(RequestRefused, match="max_model_len"):
        eng.add_request(make_req("long", 999, max_tokens=4))
    eng.add_request(make_req("ok", 10))
    with pytest.raises(RequestRefused, match="duplicate"):
        eng.add_request(make_req("ok", 10))
    run_until_idle(eng)
    eng.assert_no_leaks()


def test_abort_while_waiting_prefilling_and_decoding(engine):
    waiting = make_req("w", 10)
    prefilling = make_req("p", 1000)
    decoding = make_req("d", 10, max_tokens=50)
    for r in (decoding, prefilling):
        engine.add_request(r)
    engine.step()
    engine.step()
    assert decoding.num_output_tokens >= 1 and 0 < prefilling.num_computed_tokens < 1000
    engine.add_request(waiting)
    assert engine.scheduler.waiting[-1] is waiting
    for r in (waiting, prefilling, decoding):
        assert engine.abort(r.request_id)
        engine.check_invariants()
        assert r.status is RequestStatus.FINISHED_ABORTED
    assert not engine.abort("d")
    outs = run_until_idle(engine)
    assert {o.request_id for o in outs} == {"w", "p", "d"}
    assert all(o.status is RequestStatus.FINISHED_ABORTED for o in outs)


def test_abort_between_schedule_and_update_drops_results(engine):
    req = make_req("r", 300)
    engine.add_request(req)
    sched = engine.scheduler.schedule()
    result = engine.backend.execute(sched)
    engine.abort("r")
    engine.scheduler.update(sched, result)
    assert req.status is RequestStatus.FINISHED_ABORTED and req.output_token_ids == []


def test_stop_on_stop_token_frees_early(engine):
    prompt = list(range(20))
    first = expected_tokens(prompt, 1)[0]
    req = make_req("s", prompt, max_tokens=10)
    req.sampling_params = SamplingParams(temperature=0.0, max_tokens=10, stop_token_ids=(first,))
    engine.add_request(req)
    run_until_idle(engine)
    assert req.status is RequestStatus.FINISHED_STOPPED and req.output_token_ids == [first]
