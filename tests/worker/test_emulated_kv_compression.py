"""KV compression on an emulated deployment (issue 16 item 2's experiment): with a float KV dtype the
emulated backend's full-attention KV is float rows that the real line codec encodes; a decode worker
receives and decodes it, and the wire carries the compressed bytes (linear states exact)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from test_kv_compression_flow import offload, prompts  # noqa: E402

from prfaas.data import case_study_file  # noqa: E402
from prfaas.engine.backend_emulated import KV_GROUP, EmulatedBackend  # noqa: E402
from prfaas.engine.core import EngineCore  # noqa: E402
from prfaas.kvtransfer.loopback import LoopbackNetwork, LoopbackReceiver, LoopbackSender  # noqa: E402
from prfaas.model import kv_codec  # noqa: E402
from prfaas.planner.profiles import PrefillProfile  # noqa: E402
from prfaas.request import Request, RequestKind  # noqa: E402
from prfaas.sampling import SamplingParams  # noqa: E402
from prfaas.worker.compute import ComputeLoop  # noqa: E402
from prfaas.worker.generate_flow import Finished  # noqa: E402

PROFILE = PrefillProfile.from_csv(case_study_file("h20_8gpu_prefill.csv"))
BLOCK = 64


def backend(kv_dtype: str) -> EmulatedBackend:
    return EmulatedBackend(
        PROFILE, time_factor=0.01, block_size=BLOCK, decode_step_seconds=0.0, kv_dtype=kv_dtype
    )


@pytest.mark.parametrize("kv_dtype", ["bfloat16", "float16", "float32"])
@pytest.mark.parametrize("scheme", ["fp8", "int8"])
def test_float_kv_rows_are_whole_groups_the_codec_round_trips(kv_dtype: str, scheme: str) -> None:
    b = backend(kv_dtype)
    dtype = getattr(torch, kv_dtype)
    assert b.token_bytes_per_layer % (KV_GROUP * dtype.itemsize) == 0
    assert b.transfer_layout(Request("x", [1] * 5, SamplingParams()))[3].dtype == kv_dtype
    eng = EngineCore(b, cache_budget_bytes=8 << 20)
    prompt = prompts(1)[0]
    eng.add_request(
        Request("a", prompt, SamplingParams(max_tokens=1), kind=RequestKind.PREFILL_ONLY)
    )
    while eng.has_work:
        eng.step()
    layer = b.full_layers[0]
    rows = torch.cat([
        torch.frombuffer(seg, dtype=dtype).view(-1, b.token_bytes_per_layer // dtype.itemsize)
        for seg in eng.layer_segments("a", layer, 0, len(prompt))
    ]).float()  # fmt: skip
    assert rows.shape[0] == len(prompt) and bool(torch.isfinite(rows).all())
    # Float values of the tokens, varying along the row (not a constant the codec makes exact).
    assert rows[0, 0] == ((prompt[0] + layer) % 256 - 128) / 16 and rows[0].unique().numel() > 1
    out = torch.empty_like(rows)
    kv_codec.decode_rows(kv_codec.encode_rows(rows, scheme), out, scheme)
    tolerance = rows.abs().amax(dim=1, keepdim=True) / {"fp8": 8, "int8": 127}[scheme]
    assert bool(((out - rows).abs() <= tolerance).all())
    eng.release("a")


def make_compute(kv_dtype: str) -> ComputeLoop:
    def make_engine(hooks) -> EngineCore:  # noqa: ANN001
        return EngineCore(backend(kv_dtype), cache_budget_bytes=8 << 20, on_layer_done=hooks)

    loop = ComputeLoop(make_engine)
    loop.start()
    return loop


async def test_an_emulated_decode_worker_receives_compressed_bf16_kv() -> None:
    net = LoopbackNetwork()
    prefill, decode = make_compute("bfloat16"), make_compute("bfloat16")
    sender, receiver = LoopbackSender(net), LoopbackReceiver(net)
    per_token = backend("bfloat16").kv_bytes_per_token  # one full layer of 64 bf16 elements
    try:
        for i, prompt in enumerate(prompts(3)):
            plain, plain_bytes, _ = await offload(
                prefill, decode, sender, receiver, prompt, f"p{i}", send_as="none",
                receive_as="none",
            )  # fmt: skip
            packed, packed_bytes, events = await offload(
                prefill, decode, sender, receiver, prompt, f"c{i}", send_as="fp8",
                receive_as="fp8",
            )  # fmt: skip
            assert any(isinstance(ev, Finished) for ev in events), events
            kv_plain = len(prompt) * per_token
            assert per_token == 2 * KV_GROUP
            # 64 bf16 elements (128 bytes) per token become 64 codes + a 4-byte scale.
            assert packed_bytes == plain_bytes - kv_plain + len(prompt) * 68
            assert packed == plain  # emulated tokens are a function of the sequence
    finally:
        await sender.close()
        await receiver.close()
        await prefill.stop()
        await decode.stop()
