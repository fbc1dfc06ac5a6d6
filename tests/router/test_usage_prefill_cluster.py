"""The usage object's prfaas extension: `prompt_tokens_details.prefill_cluster` (bench serve's cache
report attributes cached tokens per cluster by it), present only when the backend said."""

from __future__ import annotations

from prfaas.router.generation_backend import GenerationFinished, Usage
from prfaas.router.http_generation import TextFinished
from prfaas.router.openai_protocol import ResponseBuilder, usage_json
from prfaas.sampling import FinishReason


def test_usage_json_carries_the_prefill_cluster_only_when_known() -> None:
    assert usage_json(10, 2, 4, "pd")["prompt_tokens_details"] == {
        "cached_tokens": 4,
        "prefill_cluster": "pd",
    }
    assert usage_json(10, 2, 4)["prompt_tokens_details"] == {"cached_tokens": 4}


def test_the_final_usage_chunk_and_the_finish_event_carry_it() -> None:
    done = TextFinished(FinishReason.LENGTH, None, 10, 2, 4, prefill_cluster="prfaas")
    usage = ResponseBuilder(False, "cmpl-1", "m", 0).usage_chunk(done)["usage"]
    assert usage["prompt_tokens_details"]["prefill_cluster"] == "prfaas"
    fin = GenerationFinished(FinishReason.STOP, Usage(10, 2, 4)).with_prefill_cluster("pd")
    assert fin.usage == Usage(10, 2, 4, prefill_cluster="pd")
    assert fin.finish_reason is FinishReason.STOP
