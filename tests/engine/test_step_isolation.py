"""One bad request fails alone: admission refuses ids outside the vocabulary, a backend's
per-item failure fails only that request, and a step that raises fails its own requests once
(never the worker, never the same batch re-run forever)."""

from __future__ import annotations

import pytest
from engine_helpers import expected_tokens, make_engine, make_req, run_until_idle

from prfaas.engine.outputs import RequestEvent, RunnerOutput, SchedulerOutput
from prfaas.engine.scheduler import RequestRefused
from prfaas.request import RequestKind, RequestStatus


class _PoisonFor:
    """Wraps a backend's execute: the item of `bad_id` fails (reported, or raised)."""

    def __init__(self, backend, bad_id: str, *, raise_instead: bool) -> None:  # noqa: ANN001
        self.inner_execute = backend.execute
        self.bad_id, self.raise_instead = bad_id, raise_instead
        self.calls_with_bad = 0

    def __call__(self, sched: SchedulerOutput, on_layer_done=None) -> RunnerOutput:  # noqa: ANN001
        ids = {c.request.request_id for c in sched.prefills}
        ids |= {d.request.request_id for d in sched.decodes}
        out = self.inner_execute(sched, on_layer_done)
        if self.bad_id in ids:
            self.calls_with_bad += 1
            if self.raise_instead:
                raise RuntimeError("index out of range in self")
            out.sampled_token_ids.pop(self.bad_id, None)
            out.failed[self.bad_id] = "sampling failed: RuntimeError: nan"
        return out


def test_reported_item_failure_fails_only_that_request() -> None:
    engine = make_engine()
    poison = _PoisonFor(engine.backend, "bad", raise_instead=False)
    engine.backend.execute = poison  # type: ignore[method-assign]
    good = [make_req(f"good-{i}", 30 + i, max_tokens=6) for i in range(3)]
    bad = make_req("bad", 40, max_tokens=6)
    for req in [good[0], bad, *good[1:]]:
        engine.add_request(req)
    outs = run_until_idle(engine)
    assert bad.status is RequestStatus.FAILED and "sampling failed" in (bad.error or "")
    failed = [o for o in outs if o.request_id == "bad" and o.finished]
    assert len(failed) == 1 and failed[0].error == bad.error
    for req in good:
        assert req.status is RequestStatus.FINISHED_LENGTH
        assert req.output_token_ids == expected_tokens(req.prompt_token_ids, 6)
    assert poison.calls_with_bad == 1
    engine.assert_no_leaks()


def test_raising_step_fails_its_requests_once_and_the_engine_goes_on() -> None:
    engine = make_engine(max_num_batched_tokens=64)
    poison = _PoisonFor(engine.backend, "bad", raise_instead=True)
    engine.backend.execute = poison  # type: ignore[method-assign]
    early = make_req("early", 10, max_tokens=3)
    engine.add_request(early)
    run_until_idle(engine)
    bad, bystander = make_req("bad", 20, max_tokens=3), make_req("bystander", 20, max_tokens=3)
    engine.add_request(bad)
    engine.add_request(bystander)
    outs = run_until_idle(engine)
    # The whole step failed (its linear states may be half-updated), exactly once.
    assert poison.calls_with_bad == 1
    for req in (bad, bystander):
        assert req.status is RequestStatus.FAILED
        assert "engine step failed: RuntimeError" in (req.error or "")
    assert {o.request_id for o in outs if o.finished} == {"bad", "bystander"}
    # Later requests are served normally.
    later = make_req("later", 25, max_tokens=4)
    engine.add_request(later)
    run_until_idle(engine)
    assert later.output_token_ids == expected_tokens(later.prompt_token_ids, 4)
    engine.assert_no_leaks()


@pytest.mark.parametrize("bad_id", [-3, 1 << 31])
def test_admission_refuses_ids_outside_the_vocabulary(bad_id: int) -> None:
    engine = make_engine()
    engine.backend.prompt_vocab_size = 259
    req = make_req("r", 10)
    req.prompt_token_ids[3] = bad_id
    with pytest.raises(RequestRefused, match="outside the vocabulary"):
        engine.add_request(req)
    engine.assert_no_leaks()


def test_a_shipped_first_token_outside_the_vocabulary_fails_that_request() -> None:
    engine = make_engine()
    engine.backend.prompt_vocab_size = 259
    req = make_req("d", 64, max_tokens=4, kind=RequestKind.DECODE_ONLY)
    engine.add_request(req)
    outs = engine.step()
    assert [o.event for o in outs] == [RequestEvent.PREALLOCATED]
    engine.mark_kv_ready("d", 70000)
    outs = run_until_idle(engine)
    assert req.status is RequestStatus.FAILED and "outside the vocabulary" in (req.error or "")
    assert [o.request_id for o in outs if o.finished] == ["d"]
    engine.assert_no_leaks()
