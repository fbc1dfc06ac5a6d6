"""The KV line codec (prfaas/model/kv_codec.py) against its naive oracle, and its error bounds."""

from __future__ import annotations

import pytest
import torch

from prfaas.model import kv_codec
from prfaas.model.kv_codec_reference import decode_row_reference, encode_row_reference


def _rows(dtype: torch.dtype) -> torch.Tensor:
    """[6, 256] rows with the cases that matter: an all-zero group, an outlier, tiny values."""
    g = torch.Generator().manual_seed(3)
    rows = torch.randn(6, 256, generator=g) * 2.0
    rows[1, :64] = 0.0
    rows[2, 70] = 300.0
    rows[3] *= 1e-6
    return rows.to(dtype)


@pytest.mark.parametrize("scheme", kv_codec.SCHEMES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_encoding_equals_the_naive_oracle(scheme: str, dtype: torch.dtype) -> None:
    rows = _rows(dtype)
    fast = kv_codec.encode_rows(rows, scheme)
    assert fast.shape == (6, kv_codec.encoded_row_bytes(256)) == (6, 256 + 4 * 4)
    for r in range(rows.shape[0]):
        assert fast[r].numpy().tobytes() == encode_row_reference(rows[r], scheme), r
    out = torch.empty(6, 256, dtype=torch.float32)
    kv_codec.decode_rows(fast, out, scheme)
    for r in range(rows.shape[0]):
        ref = torch.tensor(decode_row_reference(fast[r].numpy().tobytes(), 256, scheme))
        torch.testing.assert_close(out[r], ref, rtol=0, atol=0)


@pytest.mark.parametrize("scheme", kv_codec.SCHEMES)
def test_round_trip_error_is_within_the_format_bound(scheme: str) -> None:
    rows = _rows(torch.float32)
    out = torch.empty_like(rows)
    kv_codec.decode_rows(kv_codec.encode_rows(rows, scheme), out, scheme)
    groups = rows.view(6, 4, 64)
    scale = (groups.abs().amax(dim=2) / kv_codec.QMAX[scheme]).unsqueeze(2)
    err = (out.view(6, 4, 64) - groups).abs()
    # e4m3: 3 mantissa bits -> half an ulp is 2^-4 relative; below 2^-6 (subnormals) the step is
    # 2^-9, so half of it, times the scale, bounds the absolute error there. int8: half a step.
    fp8_bound = groups.abs() * 2.0**-4 + scale * 2.0**-10
    bound = fp8_bound if scheme == "fp8" else scale * 0.5
    assert bool((err <= bound * (1 + 1e-5) + 1e-30).all()), float((err - bound).max())
    assert bool((out[1, :64] == 0).all()), "an all-zero group decodes to zeros"
    assert float(err.max()) > 0, "a lossy codec that lost nothing is not being exercised"


def test_rows_that_do_not_split_into_groups_are_refused() -> None:
    with pytest.raises(ValueError, match="multiple of 64"):
        kv_codec.encode_rows(torch.zeros(2, 96), "fp8")
    with pytest.raises(ValueError, match="unknown KV compression"):
        kv_codec.encode_rows(torch.zeros(2, 64), "fp4")


@pytest.mark.parametrize("scheme", kv_codec.SCHEMES)
def test_native_decode_equals_the_torch_path_for_every_code(scheme: str) -> None:
    from prfaas.model.ops.native.loader import library

    if library() is None:
        pytest.skip("native kernels unavailable (no compiler, or PRFAAS_NATIVE_KERNELS=0)")
    g = torch.Generator().manual_seed(1)
    rows, e = 32, 256
    encoded = torch.randint(
        0, 256, (rows, kv_codec.encoded_row_bytes(e)), dtype=torch.uint8, generator=g
    )
    codes = torch.arange(256, dtype=torch.uint8).repeat(rows * e // 256).view(rows, e)
    if scheme == "fp8":  # 0x7f / 0xff are NaN in e4m3fn; the encoder never writes them
        codes[(codes & 0x7F) == 0x7F] = 0
    encoded[:, :e] = codes
    encoded[:, e:] = (torch.rand(rows, e // 64, generator=g) * 10).view(torch.uint8)
    fast, slow = torch.empty(rows, e), torch.empty(rows, e)
    kv_codec.decode_rows(encoded, fast, scheme)
    kv_codec.decode_rows(encoded, slow, scheme, allow_native=False)
    assert torch.equal(fast, slow)
