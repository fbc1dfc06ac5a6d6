"""An in-process OpenAI server for the load generator: the router's real HTTP app over a fake
backend that also counts routing decisions and KV bytes sent, as a real router and workers do."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterator
from contextlib import ExitStack
from dataclasses import dataclass

import pytest

from prfaas.metrics import TransferMetrics
from prfaas.router.generation_backend import FakeBackend, GenerationEvent, GenerationRequest
from tests.router.conftest import Served, serve_app

KV_BYTES_PER_PROMPT_TOKEN = 1000


@dataclass
class CountingBackend(FakeBackend):
    """Records one routing decision per request under `policy` and counts
    `KV_BYTES_PER_PROMPT_TOKEN` per prompt token as KV bytes sent."""

    policy: str = "prfaas"
    served: Served | None = None
    transfer: TransferMetrics | None = None

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[GenerationEvent, None]:
        if self.served is not None:
            self.served.metrics.record_routing(self.policy, "offload", "long", "prfaas", 0)
        if self.transfer is not None:
            nbytes = KV_BYTES_PER_PROMPT_TOKEN * len(request.prompt_token_ids)
            self.transfer.sent_bytes.labels("prfaas-pd").inc(nbytes)
        async for event in super().generate(request):
            yield event


def start_counting(stack: ExitStack, backend: CountingBackend) -> Served:
    served = stack.enter_context(serve_app(backend))
    backend.served = served
    backend.transfer = TransferMetrics(served.metrics.registry)
    return served


@pytest.fixture
def server() -> Iterator[Served]:
    """Two-token-per-chunk pacing: 10 ms per token, 3 cached prompt tokens per request."""
    with ExitStack() as stack:
        yield start_counting(stack, CountingBackend(token_delay_s=0.01, cached_tokens=3))
