"""Worker gRPC entries' conversion (prfaas/worker/wire_inputs.py): wire -> checked prompt + sampling."""

from __future__ import annotations

import math

import pytest
import torch

from prfaas._proto.prfaas.v1 import common_pb2
from prfaas.model.sampler import sample_one
from prfaas.request_limits import InvalidRequest
from prfaas.worker.wire_inputs import inputs_from_proto

VOCAB = 512


def test_wire_defaults_become_engine_defaults() -> None:
    prompt, params = inputs_from_proto([256, 1, 2], common_pb2.SamplingParams(), VOCAB)
    assert prompt == [256, 1, 2]
    assert (params.temperature, params.top_p, params.top_k, params.max_tokens) == (0.0, 1.0, 0, 16)
    assert params.seed is None
    wire = common_pb2.SamplingParams(top_k=-1, seed=2**64 - 1, has_seed=True, max_tokens=3)
    _, params = inputs_from_proto([1], wire, VOCAB)
    assert (params.top_k, params.seed, params.max_tokens) == (0, 2**64 - 1, 3)


@pytest.mark.parametrize(
    "prompt, wire, param",
    [
        ([1, 70000], {}, "prompt_ids"),
        ([-3], {}, "prompt_ids"),
        ([1], {"temperature": math.nan}, "sampling"),
        ([1], {"temperature": math.inf}, "sampling"),
        ([1], {"temperature": -1.0}, "sampling"),
        ([1], {"top_p": math.nan}, "sampling"),
        ([1], {"top_p": 1.5}, "sampling"),
        ([1], {"top_k": -2}, "sampling"),
        ([1], {"max_tokens": -4}, "sampling"),
        ([1], {"stop_token_ids": [common_pb2.TokenIds(ids=[3, VOCAB])]}, "stop_token_ids"),
    ],
)
def test_values_the_engine_cannot_run_are_refused(
    prompt: list[int], wire: dict, param: str
) -> None:
    with pytest.raises(InvalidRequest) as info:
        inputs_from_proto(prompt, common_pb2.SamplingParams(**wire), VOCAB)
    assert info.value.param == param


def test_tiny_temperatures_sample_greedily_instead_of_overflowing() -> None:
    logits = torch.tensor([1.0, 3.0, 2.0, float("-inf")])
    # Dividing by 1e-40 overflows the logits to inf: the softmax is NaN and sampling raises.
    with pytest.raises(RuntimeError):
        torch.multinomial((logits / 1e-40).softmax(-1), 1)
    _, params = inputs_from_proto([1], common_pb2.SamplingParams(temperature=1e-40), VOCAB)
    assert params.temperature == 0.0
    assert sample_one(logits, params) == 1
