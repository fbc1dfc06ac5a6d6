"""What the router's planner and deadlines take from the deployment (issue 12, the phased run):
the KV bytes per token the workers ship, the measured prefill time against the profile over the
same requests, and the KV already committed ahead on the link."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
from fake_workers import start_cluster
from test_dispatch_routing import run

from prfaas.planner.profiles import DecodeProfile, PrefillProfile
from prfaas.planner.search import ClusterModel
from prfaas.roles import Role
from prfaas.router.control import LongTermController
from prfaas.router.control.long_term import LongTermConfig
from prfaas.router.control_loops import ControlLoops
from prfaas.router.generation_backend import GenerationFinished, GenerationRequest
from prfaas.router.policy import Reason, RouteDecision, Target
from prfaas.router.policy import WorkerSnapshot as Snap
from prfaas.sampling import SamplingParams

# An H20-like profile: a fixed ~0.93 s per request plus a per-token cost, 17,000 KV bytes/token.
TOKENS = np.array([128.0, 1024.0, 32768.0, 131072.0])
PROFILE = PrefillProfile(
    "h20ish", TOKENS, np.array([0.9368, 1.0, 5.25, 43.2]), 180e6 + 17_000.0 * TOKENS
)
PRFAAS = PrefillProfile("h200ish", TOKENS, PROFILE.prefill_seconds * 0.4, PROFILE.kv_bytes)
LINK = 125e6  # 1 Gbit/s


def _model() -> ClusterModel:
    return ClusterModel(PROFILE, DecodeProfile(20, 0.025), 16, n_pd=3, n_prfaas=1,
                        prfaas_profile=PRFAAS, link_bytes_per_s=LINK)  # fmt: skip


def _workers() -> list[Snap]:
    return [Snap("pd-0", "pd", Role.PREFILL), Snap("pd-1", "pd", Role.DECODE),
            Snap("pd-2", "pd", Role.DECODE)]  # fmt: skip


def _long_mix(long: LongTermController) -> None:
    """60 requests, half short (2K) and half long (64K tokens), within the window."""
    for i in range(60):
        long.observe_request(float(i), 2048 if i % 2 else 65536)


def test_planner_uses_the_shipped_kv_bytes_not_the_profiles() -> None:
    """The profile's 17 KB/token against a 1 Gbit/s link caps PrfaaS at ~0.1 req/s of 64K
    prompts; the workers ship ÷1000 (17 B/token), where the link is no limit at all. Fed the
    shipped size, the planner's link term B_out / S_kv grows 1000x and its t falls so that the
    long half is offloaded (the phased run sat at t = 70-130K: PrfaaS took almost nothing)."""
    unscaled = LongTermController(_model(), LongTermConfig(window_s=1e9))
    shipped = LongTermController(_model(), LongTermConfig(window_s=1e9))
    shipped.observe_kv_size(17.0, 180e3)
    for long in (unscaled, shipped):
        _long_mix(long)
        long.observe_stage_speed(pd=0.1, prfaas=0.1)
    before = unscaled.step(60.0, _workers(), "pd").current
    after = shipped.step(60.0, _workers(), "pd").current
    assert before is not None and after is not None
    assert before.p == 0.0  # nothing offloaded: the link "cannot" carry a long prompt
    assert after.threshold < 65536 and after.p >= 0.5
    assert after.lambda_max > 1.5 * before.lambda_max
    # Eq. 3 is compute-bound now: the link term B_out / S_kv(l_long) with the shipped bytes is
    # far above N_prfaas / T_prefill(l_long).
    compute = 1 / (0.1 * float(PRFAAS.t_prefill(after.l_long)))
    assert after.theta_prfaas == pytest.approx(compute)
    assert LINK / (180e3 + 17.0 * after.l_long) > 10 * compute


def test_prefill_correction_compares_the_same_requests_whatever_their_length() -> None:
    """A PD-P that prefilled only short requests at 0.1x its profile reads 0.1, also when the
    window's mean length is far longer. The old correction (tokens/s at the window's mean length)
    read 12-15 in the phased run: 33-token warm-ups at 0.1 x 0.93 s are ~350 tokens/s, and the
    profile takes a 33K-token prompt in 5.3 s, not 33K / 350 = 94 s."""
    long = LongTermController(_model(), LongTermConfig(window_s=100.0))
    _long_mix(long)
    for n in (33, 33):
        long.observe_prefill(10.0, "pd", n, 0.1 * float(PROFILE.t_prefill(n)))
    for n in (40000, 90000):
        long.observe_prefill(10.0, "prfaas", n, 0.1 * float(PRFAAS.t_prefill(n)))
    slowdown = long.measured_slowdown(50.0)
    assert slowdown == pytest.approx({"pd": 0.1, "prfaas": 0.1})
    # What the old correction computed from the same PD-P: its tokens/s at the mean length.
    mean = (2048 + 65536) / 2
    tokens_per_s = 33 / (0.1 * float(PROFILE.t_prefill(33)))
    assert (mean / tokens_per_s) / float(PROFILE.t_prefill(mean)) > 10
    # Samples leave with the window.
    assert long.measured_slowdown(200.0) == {}


async def test_dispatcher_and_loops_feed_the_planner_from_the_workers() -> None:
    """End to end over fake workers: the PrfaaS worker reports the KV it ships per token (17 B)
    and a prefill's compute seconds; the dispatcher, the short-term loop's committed KV and the
    planner's S_kv all use the reported size, and the planner's correction is measured/profiled
    over that request."""
    c = await start_cluster(threshold=64)
    try:
        long = LongTermController(_model())
        c.dispatcher.long = long
        loops = ControlLoops(c.registry, c.dispatcher.short, LINK, "prfaas", "pd", long=long,
                             kv=c.dispatcher.kv)  # fmt: skip
        assert c.dispatcher.kv.source == "default" and c.dispatcher.kv_bytes_per_token == 16384.0
        prfaas = c.worker("prfaas-0")
        prfaas.script.load = {"kv_bytes_per_token": 17.0, "kv_state_bytes": 180_000}
        await c.registry.heartbeat_once(c.registry.get("prfaas-0"))
        assert c.dispatcher.kv.source == "reported" and c.dispatcher.kv_bytes_per_token == 17.0
        assert c.dispatcher.kv.bytes_for(1000) == 180_000 + 17_000
        prfaas.script.prefill_seconds = 0.1 * float(PRFAAS.t_prefill(200))
        _, decisions, _, fin = await run(c, list(range(200)))
        assert decisions[0].target is Target.PRFAAS and fin is not None
        slowdown = loops.calibrate()
        assert slowdown["prfaas"] == pytest.approx(0.1)
        assert "pd" not in slowdown  # no PD-P prefill seen
        assert long.kv_size == (17.0, 180_000.0)
        # The short loop's committed KV: 3 offloads of 1000 uncached tokens in flight.
        handle = c.registry.get("prfaas-0")
        handle.inflight_prefills, handle.inflight_prefill_tokens = 3, 3000
        assert loops.telemetry().committed_bytes == 3 * 180_000 + 3000 * 17
    finally:
        await c.close()


async def test_remote_prefill_deadline_counts_the_kv_committed_ahead_on_the_link() -> None:
    """The link carries what is committed before a new offload's KV: 50 MB ahead at 1 MB/s adds
    ~50 s (x the factor) to the deadline; nothing ahead leaves it as it was."""
    c = await start_cluster(threshold=64, link_bytes_per_s=1e6, prefill_deadline_factor=1.0,
                            prefill_slack_s=0.0, default_prefill_tokens_per_s=1e9)  # fmt: skip
    try:
        prfaas = c.worker("prfaas-0")
        prfaas.script.load = {"kv_bytes_per_token": 1000.0}
        handle = c.registry.get("prfaas-0")
        await c.registry.heartbeat_once(handle)
        d = RouteDecision(Target.PRFAAS, Reason.OFFLOADED, "prfaas-0", "pd-1", 0, 1000)
        alone = c.dispatcher.prefill_deadline(handle, d)
        assert alone == pytest.approx(1.0, rel=0.01)  # 1 MB of own KV at 1 MB/s
        # Another worker's offloads: 50,000 uncached tokens in flight = 50 MB ahead on the link.
        other = c.registry.get("prfaas-0")
        other.inflight_prefills, other.inflight_prefill_tokens = 5, 50_000
        ahead = c.dispatcher.prefill_deadline(handle, d)
        assert ahead == pytest.approx(51.0, rel=0.01)
        # The senders' reported backlog counts when it exceeds the router's own count.
        other.inflight_prefills = other.inflight_prefill_tokens = 0
        prfaas.script.load = {"kv_bytes_per_token": 1000.0, "kv_queued_bytes": 9_000_000}
        await c.registry.heartbeat_once(handle)
        assert c.dispatcher.prefill_deadline(handle, d) == pytest.approx(10.0, rel=0.01)
    finally:
        await c.close()


async def test_a_consumer_that_closes_after_the_finish_still_teaches_the_router() -> None:
    """The HTTP layer closes the dispatcher's generator as soon as it has the finish event. The
    attempt's learning (drain rate, KV bytes, the planner's prefill sample) must already have
    run, and no Abort may go to the workers of a request that finished (before: nothing after
    the last `yield` ran, so the phased run's planner never got a prefill sample)."""
    c = await start_cluster(threshold=64)
    try:
        long = LongTermController(_model())
        c.dispatcher.long = long
        c.worker("prfaas-0").script.prefill_seconds = 0.1 * float(PRFAAS.t_prefill(200))
        req = GenerationRequest("r1", tuple(range(200)), SamplingParams(max_tokens=4))
        stream = c.dispatcher.generate(req)
        async for item in stream:
            if isinstance(item, GenerationFinished):
                break  # as http_generation does: return, then aclose()
        await stream.aclose()
        assert long.measured_slowdown(time.monotonic()) == {"prfaas": pytest.approx(0.1)}
        assert c.registry.get("prfaas-0").drain_tokens_per_s > 0
        assert c.dispatcher.kv.source == "measured"  # 1000 B/token from the fake's bytes_sent
        await asyncio.sleep(0.2)
        assert c.worker("pd-1").aborted == [] and c.worker("prfaas-0").aborted == []
    finally:
        await c.close()
