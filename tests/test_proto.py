"""The generated protobuf stubs import, round-trip, and are not stale."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from prfaas._proto.prfaas.v1 import common_pb2

ROOT = Path(__file__).resolve().parent.parent


def test_sampling_params_round_trip() -> None:
    params = common_pb2.SamplingParams(temperature=0.7, top_p=0.9, top_k=5, seed=7, has_seed=True, max_tokens=16)
    params.stop_token_ids.add(ids=[10, 11])
    decoded = common_pb2.SamplingParams.FromString(params.SerializeToString())
    assert decoded == params
    assert list(decoded.stop_token_ids[0].ids) == [10, 11]
    assert decoded.max_tokens == 16


def test_usage_and_finish_reason() -> None:
    usage = common_pb2.Usage(prompt_tokens=100, completion_tokens=5, cached_tokens=64)
    assert common_pb2.Usage.FromString(usage.SerializeToString()).cached_tokens == 64
    assert common_pb2.FinishReason.Name(common_pb2.FINISH_REASON_LENGTH) == "FINISH_REASON_LENGTH"


def test_generated_stubs_are_fresh() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_proto.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
