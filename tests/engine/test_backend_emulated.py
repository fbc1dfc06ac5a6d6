"""Emulated backend: profile fidelity (issue 4 acceptance), layer pacing, byte handoff."""

from __future__ import annotations

import time

import pytest
from engine_helpers import expected_tokens

from prfaas.data import case_study_file
from prfaas.engine.backend_emulated import BACK_TO_BACK_S, EmulatedBackend
from prfaas.engine.core import EngineCore
from prfaas.planner.profiles import PrefillProfile
from prfaas.request import Request, RequestKind, RequestStatus
from prfaas.sampling import SamplingParams

CASE_STUDY = case_study_file("h200_8gpu_prefill.csv")

TIME_FACTOR = 0.1
BYTE_FACTOR = 1e-2


def make(budget: int = 64 << 20, **kw: object) -> EngineCore:
    profile = PrefillProfile.from_csv(CASE_STUDY)
    backend = EmulatedBackend(
        profile, time_factor=TIME_FACTOR, byte_factor=BYTE_FACTOR, decode_step_seconds=0.01
    )
    kw.setdefault("max_num_batched_tokens", 32768)
    return EngineCore(backend, cache_budget_bytes=budget, **kw)  # type: ignore[arg-type]


def req(rid: str, n: int, kind: RequestKind = RequestKind.FULL, max_tokens: int = 3) -> Request:
    prompt = [(i * 7) % 256 for i in range(n)]
    return Request(rid, prompt, SamplingParams(temperature=0.0, max_tokens=max_tokens), kind=kind)


def test_profile_interpolates_table_rows():
    p = PrefillProfile.from_csv(CASE_STUDY)
    assert p.seconds(1024) == pytest.approx(0.431278)
    assert p.seconds(1536) == pytest.approx((0.431278 + 0.473631) / 2)
    assert p.bytes(4096) == pytest.approx(250576913)


@pytest.mark.parametrize("n", [128, 1536, 8192, 20000])
def test_prefill_time_and_payload_within_5_percent_of_scaled_profile(n):
    eng = make(enable_prefix_cache=False)
    profile = eng.backend.profile  # type: ignore[attr-defined]
    target = profile.seconds(n) * TIME_FACTOR
    # Best of three: a step timed from its own start can only be slowed (never sped up) by other
    # load on the machine. The pause before each step makes it so: a step that follows the last
    # within BACK_TO_BACK_S is timed from the last one's planned end, and is shorter when that
    # step overran (a loaded CI machine did: 0.111 s against 0.125 s).
    best = float("inf")
    for i in range(3):
        time.sleep(2 * BACK_TO_BACK_S)
        r = req(f"r{i}", n, RequestKind.PREFILL_ONLY)
        eng.add_request(r)
        before = eng.busy_seconds
        eng.step()
        best = min(best, eng.busy_seconds - before)
        assert r.status is RequestStatus.FINISHED_STOPPED
        if i < 2:
            eng.release(r.request_id)
    assert best == pytest.approx(target, rel=0.05)
    payload = sum(spec.nbytes for spec in eng.transfer_layout("r2"))
    assert payload == pytest.approx(profile.bytes(n) * BYTE_FACTOR, rel=0.05)
    shipped = sum(v.nbytes for layer in range(4) for v in eng.layer_segments("r2", layer, 0, n))
    assert shipped == payload
    eng.release("r2")
    eng.assert_no_leaks()


def test_layer_done_events_spread_over_prefill():
    stamps: list[tuple[int, float]] = []
    eng = make(on_layer_done=lambda rid, layer, s, e: stamps.append((layer, time.perf_counter())))
    eng.add_request(req("r", 8192, RequestKind.PREFILL_ONLY))
    t0 = time.perf_counter()
    eng.step()
    total = time.perf_counter() - t0
    assert [layer for layer, _ in stamps] == [0, 1, 2, 3]
    # The first layer is done after about a quarter of the prefill, not at its end.
    assert stamps[0][1] - t0 < 0.5 * total
    eng.release("r")


def test_remote_handoff_bytes_and_tokens_match_local():
    n = 700
    local = make()
    full = req("full", n, max_tokens=5)
    local.add_request(full)
    while local.has_work:
        local.step()
    assert full.output_token_ids == expected_tokens(full.prompt_token_ids, 5)

    prefill, decode = make(), make()
    p = req("x", n, RequestKind.PREFILL_ONLY, max_tokens=5)
    d = req("x", n, RequestKind.DECODE_ONLY, max_tokens=5)
    prefill.add_request(p)
    decode.add_request(d)
    [out] = prefill.step()
    dst = decode.receive_segments("x")
    for layer, views in enumerate(dst):
        src = b"".join(bytes(v) for v in prefill.layer_segments("x", layer, 0, n))
        flat = memoryview(bytearray(src))
        off = 0
        for v in views:
            v[:] = flat[off : off + v.nbytes]
            off += v.nbytes
        assert off == len(src)
    prefill.release("x")
    decode.mark_kv_ready("x", out.new_token_ids[0])
    while decode.has_work:
        decode.step()
    assert d.output_token_ids == full.output_token_ids
    prefill.assert_no_leaks()
    decode.assert_no_leaks()


def test_prefix_hit_installs_checkpointed_state():
    eng = make(max_num_batched_tokens=4096)
    bs = eng.backend.block_size
    a = req("a", 3 * bs + 10, RequestKind.PREFILL_ONLY)
    eng.add_request(a)
    eng.step()
    state_a = bytes(eng.layer_segments("a", 0, 0, 0)[0])
    eng.release("a")
    b = req("b", 3 * bs + 10, RequestKind.PREFILL_ONLY)
    eng.add_request(b)
    eng.step()
    assert b.num_cached_tokens == 3 * bs
    assert bytes(eng.layer_segments("b", 0, 0, 0)[0]) == state_a
    eng.release("b")
    eng.assert_no_leaks()


def test_prefill_backlog_is_the_profile_cost_of_the_tokens_left():
    """The worker's load report of queued prefill work (issue 12): each prefill held costs the
    profile's seconds of its prompt tokens not computed yet; a finished one costs nothing."""
    eng = make(enable_prefix_cache=False, max_num_batched_tokens=2048)
    p = eng.backend.profile  # type: ignore[attr-defined]
    assert eng.prefill_backlog_seconds() == 0.0
    eng.add_request(req("a", 5000, RequestKind.PREFILL_ONLY))
    eng.add_request(req("b", 1000, RequestKind.PREFILL_ONLY))
    # A chunk [s, e) costs P(e) - P(s), the first one P(0) more: a whole prompt of n costs P(n).
    both = (p.seconds(5000) + p.seconds(1000)) * TIME_FACTOR
    assert eng.prefill_backlog_seconds() == pytest.approx(both)
    eng.step()  # the first 2048 tokens of "a"
    left = (p.seconds(5000) - p.seconds(2048) + p.seconds(1000)) * TIME_FACTOR
    assert eng.prefill_backlog_seconds() == pytest.approx(left)
    while eng.has_work:
        eng.step()
    assert eng.prefill_backlog_seconds() == 0.0
    for rid in ("a", "b"):
        eng.release(rid)


class FakeClock:
    """Stands in for the module's `time`: the emulator's sleeps and its CPU work move it."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_a_decode_step_lasts_its_step_whatever_the_emulators_own_work(monkeypatch):
    """A decode step takes `decode_step_seconds` from its start, as a GPU step would: the
    emulator's cache writes and digests (real CPU time, ~2 ms per 28K-token sequence) happen inside it.
    Sleeping a whole step after them made a batch of 60 step 16 % slower than the profile."""
    from prfaas.engine import backend_emulated

    clock = FakeClock()
    monkeypatch.setattr(backend_emulated, "time", clock)
    step, write_cost = 0.5, 0.1
    backend = EmulatedBackend(PrefillProfile.from_csv(CASE_STUDY), decode_step_seconds=step)
    write_kv = backend._write_kv

    def slow_write(*args: object) -> None:
        clock.now += write_cost  # the writes' CPU time, on the emulator's clock
        write_kv(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(backend, "_write_kv", slow_write)
    eng = EngineCore(backend, cache_budget_bytes=64 << 20, max_num_batched_tokens=32768)
    durations: list[tuple[bool, float]] = []
    execute = backend.execute

    def timed(sched, on_layer_done=None):  # type: ignore[no-untyped-def]
        out = execute(sched, on_layer_done)
        durations.append((bool(sched.prefills), out.compute_seconds))
        return out

    monkeypatch.setattr(backend, "execute", timed)
    r = req("r", 300, max_tokens=4)
    eng.add_request(r)
    while eng.has_work:
        eng.step()
    decode_steps = [d for has_prefill, d in durations if not has_prefill]
    assert len(decode_steps) == 3 and r.output_token_ids == expected_tokens(r.prompt_token_ids, 4)
    # Each decode step wrote one full-attention layer (0.1 s of "CPU") inside its 0.5 s.
    assert decode_steps == [pytest.approx(step)] * 3


def test_back_to_back_steps_keep_the_profiles_pace_and_an_idle_engine_gets_nothing_free(
    monkeypatch,
):
    """Steps that follow each other are timed end to end: the host's work between them (and a
    late wake-up) is not added to every step, so a long prefill takes the profile's time. A step
    after a pause longer than `BACK_TO_BACK_S` is timed from its own start."""
    from prfaas.engine import backend_emulated

    clock = FakeClock()
    monkeypatch.setattr(backend_emulated, "time", clock)
    profile = PrefillProfile.from_csv(CASE_STUDY)
    backend = EmulatedBackend(profile, decode_step_seconds=0.5)
    eng = EngineCore(backend, cache_budget_bytes=64 << 20, max_num_batched_tokens=2048,
                     enable_prefix_cache=False)  # fmt: skip
    between_steps = 0.02  # the host's work after each step, on the emulator's clock
    n = 16 * 2048
    eng.add_request(req("long", n, RequestKind.PREFILL_ONLY))
    steps = 0
    while eng.scheduler.get_request("long").num_computed_tokens < n:  # type: ignore[union-attr]
        eng.step()
        clock.now += between_steps
        steps += 1
    assert steps == 16
    # 16 steps of host work, but only the last one's is past the profile's time.
    assert clock.now == pytest.approx(profile.seconds(n) + between_steps)
    eng.release("long")
    clock.now += 1.0  # idle: the next step starts from its own start
    before = clock.now
    eng.add_request(req("short", 1000, RequestKind.PREFILL_ONLY))
    eng.step()
    assert clock.now - before == pytest.approx(profile.seconds(1000))
