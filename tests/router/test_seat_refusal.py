"""A decode worker's refusal past its seats (`overloaded`, worker/seat_line.py; issue 17): the
router retries another decode worker, and with none left answers 429 with Retry-After — never a
500 — and the prefill started with the admission is cancelled."""

from __future__ import annotations

import pytest
from fake_workers import start_cluster
from test_dispatch_failures import wait_for
from test_dispatch_routing import run

from prfaas.router.generation_backend import Overloaded
from prfaas.router.http_errors import from_backend_error


async def test_a_full_decode_worker_is_retried_on_another() -> None:
    c = await start_cluster(pd_roles=("prefill", "decode", "decode"), threshold=1 << 20)
    try:
        c.worker("pd-1").script.admit_error = "overloaded"
        c.worker("pd-2").script.admit_error = ""
        # pd-1 ranks first (same load, smaller id); a local request, prefilled on pd-0.
        _, decisions, tokens, fin = await run(c, list(range(40)))
        assert [d.decode_worker for d in decisions] == ["pd-1", "pd-2"]
        assert len(tokens) == 4 and fin is not None
    finally:
        await c.close()


@pytest.mark.parametrize("num_decoders", [1, 3])
async def test_every_decode_worker_full_is_429_with_retry_after(num_decoders: int) -> None:
    # 3 decoders: every one of the dispatcher's max_attempts (3) is refused for capacity; before,
    # the request then failed as an error (500) after three attempts.
    roles = ("prefill",) + ("decode",) * num_decoders
    c = await start_cluster(pd_roles=roles, threshold=1 << 20, retry_after_s=2.0)
    try:
        for i in range(1, num_decoders + 1):
            c.worker(f"pd-{i}").script.admit_error = "overloaded"
            c.worker(f"pd-{i}").script.admit_delay_s = 0.1  # pd-0's prefill starts meanwhile
        with pytest.raises(Overloaded) as refused:
            await run(c, list(range(40)))
        assert refused.value.retry_after_s == 2.0
        api = from_backend_error(refused.value)
        assert api.status_code == 429 and api.headers == {"Retry-After": "2"}
        decoders = [c.worker(f"pd-{i}") for i in range(1, num_decoders + 1)]
        assert [len(w.generate_requests) for w in decoders] == [1] * num_decoders
        # Each refused admission cancelled the prefill started with it.
        prefill = c.worker("pd-0")
        await wait_for(lambda: len(prefill.prefills_cancelled) == num_decoders)
    finally:
        await c.close()
