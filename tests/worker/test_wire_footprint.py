"""The KV a worker reports shipping per token (`WorkerLoad.kv_bytes_per_token`, issue 12): its
backend's wire layout, byte factor and KV compression applied, never the profile's bytes."""

from __future__ import annotations

import pytest

from prfaas.data import case_study_file
from prfaas.engine.backend_emulated import EmulatedBackend
from prfaas.engine.execution_backend import BufferSpec, NullBackend
from prfaas.planner.profiles import PrefillProfile
from prfaas.worker.prefill_flow import wire_bytes, wire_footprint


def test_emulated_worker_reports_the_scaled_bytes_it_ships() -> None:
    profile = PrefillProfile.from_csv(case_study_file("h20_8gpu_prefill.csv"))
    backend = EmulatedBackend(profile, byte_factor=1e-3)
    per_token, state = wire_footprint(backend)
    # The profile says ~17 KB/token; the deployment ships ÷1000 (one full layer of 17 B/token).
    assert profile.kv_bytes_per_token == pytest.approx(17_143, rel=1e-3)
    assert (per_token, state) == (backend.kv_bytes_per_token, backend.state_bytes_per_request)
    assert per_token == 17
    for n in (1, 33, 4096, 131072):
        assert wire_bytes(backend, n) == state + n * per_token


class _FloatKv(NullBackend):
    """One bf16 full-attention layer of 128 elements per token and one 4 KB state."""

    def transfer_layout(self, req) -> list[BufferSpec]:  # noqa: ANN001
        n = req.num_prompt_tokens
        return [BufferSpec("L00.kv", "bfloat16", n * 256), BufferSpec("L01.state", "uint8", 4096)]


def test_kv_compression_is_what_is_reported() -> None:
    pytest.importorskip("torch")
    from prfaas.model import kv_codec

    backend = _FloatKv(block_size=16)
    assert wire_footprint(backend) == (256.0, 4096)
    per_token, state = wire_footprint(backend, "fp8")
    assert per_token == kv_codec.encoded_row_bytes(128) < 256 and state == 4096
