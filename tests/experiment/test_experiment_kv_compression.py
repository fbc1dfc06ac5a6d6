"""`prfaas experiment --kv-dtype bfloat16 --kv-compression fp8` (issue 16 item 2): the planner plans
with the bytes the workers put on the line, the deployment's workers get the codec, and the cache
is still sized with the cache's (uncompressed) bytes."""

from __future__ import annotations

import argparse

import pytest

from prfaas.tools.experiment import cli
from prfaas.tools.experiment.deploy import topology_for
from prfaas.tools.experiment.scale import (
    PD_PROFILE,
    Scale,
    cache_budget_mb,
    predict,
    scaled_profile,
)


def test_the_planner_sees_the_compressed_bytes_and_the_workers_get_the_codec() -> None:
    pytest.importorskip("torch")
    plain = Scale(byte_factor=0.0075, kv_dtype="bfloat16")
    packed = Scale(byte_factor=0.0075, kv_dtype="bfloat16", kv_compression="fp8")
    n = 32768
    cache = scaled_profile(PD_PROFILE, plain).bytes(n)
    wire = scaled_profile(PD_PROFILE, packed).bytes(n)
    state = scaled_profile(PD_PROFILE, plain).bytes(0)
    # One bf16 layer of 64 elements (128 B) per token becomes 64 codes + a 4-byte scale.
    assert wire - state == pytest.approx((cache - state) * 68 / 128)
    assert scaled_profile(PD_PROFILE, packed, on_wire=False).bytes(n) == cache
    assert cache_budget_mb(packed) == cache_budget_mb(plain)
    _, prediction = predict(packed)
    topo = topology_for("prfaas", prediction, packed, port_base=36000)
    assert (topo.emulated_kv_dtype, topo.kv_compression) == ("bfloat16", "fp8")


def test_compression_without_a_float_kv_dtype_is_refused() -> None:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(["--kv-compression", "int8"])
    with pytest.raises(SystemExit, match="needs a float --kv-dtype"):
        cli._scale(args)
    args = parser.parse_args(["--kv-compression", "int8", "--kv-dtype", "float16"])
    assert (cli._scale(args).kv_dtype, cli._scale(args).kv_compression) == ("float16", "int8")
