"""The shared request limits (prfaas/request_limits.py) every entry checks against."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest

from prfaas.request_limits import (
    INT32_MAX,
    UINT64_MAX,
    InvalidRequest,
    check_sampling,
    check_token_ids,
    wire_seed,
)


@dataclass(frozen=True)
class Values:
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    max_tokens: int = 16
    stop_token_ids: tuple[int, ...] = ()
    stop_sequences: tuple[tuple[int, ...], ...] = ()


def test_token_ids_inside_the_vocabulary_pass() -> None:
    check_token_ids([0, 5, 258], 259, "prompt")


@pytest.mark.parametrize("bad, position", [([1, 259], 1), ([-3], 0), ([0, 1, 70000], 2)])
def test_token_ids_outside_the_vocabulary_name_the_position(bad: list[int], position: int) -> None:
    with pytest.raises(InvalidRequest) as info:
        check_token_ids(bad, 259, "prompt")
    assert info.value.param == "prompt"
    assert info.value.message.startswith(f"prompt[{position}] = {bad[position]} ")


def test_valid_sampling_passes_including_wire_defaults() -> None:
    check_sampling(Values(), 259)
    check_sampling(Values(temperature=0.0, top_p=0.0, top_k=-1, max_tokens=INT32_MAX), 259)
    check_sampling(Values(stop_token_ids=(257,), stop_sequences=((1, 2),)), 259)


@pytest.mark.parametrize(
    "values, param",
    [
        (Values(temperature=math.nan), "temperature"),
        (Values(temperature=math.inf), "temperature"),
        (Values(temperature=-0.5), "temperature"),
        (Values(top_p=math.nan), "top_p"),
        (Values(top_p=1.5), "top_p"),
        (Values(top_p=-0.1), "top_p"),
        (Values(top_k=-2), "top_k"),
        (Values(top_k=INT32_MAX + 1), "top_k"),
        (Values(max_tokens=0), "max_tokens"),
        (Values(max_tokens=INT32_MAX + 1), "max_tokens"),
        (Values(stop_token_ids=(259,)), "stop_token_ids"),
        (Values(stop_sequences=((1, -1),)), "stop_token_ids"),
    ],
)
def test_invalid_sampling_is_refused_naming_the_field(values: Values, param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        check_sampling(values, 259)
    assert info.value.param == param
    assert isinstance(info.value, ValueError)  # callers that catch ValueError still refuse it


def test_seeds_map_onto_uint64_without_collisions() -> None:
    assert wire_seed(0) == 0
    assert wire_seed(2**63 - 1) == 2**63 - 1
    assert wire_seed(-1) == UINT64_MAX
    assert wire_seed(-(2**63)) == 2**63
    with pytest.raises(InvalidRequest):
        wire_seed(2**63)
