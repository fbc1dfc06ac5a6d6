"""HTTP test harness: a tiny byte tokenizer, and the app served by a real uvicorn on localhost."""

from __future__ import annotations

import codecs
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import openai
import pytest
import uvicorn
from prometheus_client import CollectorRegistry

from prfaas.metrics import RouterMetrics
from prfaas.router.generation_backend import FakeBackend
from prfaas.router.http_api import create_app

BOS, EOS = 256, 257


class ByteStreamDecoder:
    """Incremental UTF-8 decoding that holds incomplete characters."""

    def __init__(self) -> None:
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, token_ids: Sequence[int]) -> str:
        return self._utf8.decode(bytes(i for i in token_ids if i < 256))

    def flush(self) -> str:
        return self._utf8.decode(b"", final=True)


class ByteTokenizer:
    """Ids 0-255 are bytes, 256 BOS, 257 EOS, 258 PAD; encode prepends BOS."""

    eos_token_id = EOS
    vocab_size = 259

    def encode(self, text: str) -> list[int]:
        return [BOS, *text.encode()]

    def decode(self, token_ids: Sequence[int]) -> str:
        return bytes(i for i in token_ids if i < 256).decode(errors="replace")

    def stream_decoder(self) -> ByteStreamDecoder:
        return ByteStreamDecoder()


@dataclass
class Served:
    """A running server: its base URL, backend and metrics, plus ready-made clients."""

    url: str
    backend: FakeBackend
    metrics: RouterMetrics

    def client(self, api_key: str = "unused", **kwargs: Any) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=f"{self.url}/v1", api_key=api_key, max_retries=0, timeout=20, **kwargs
        )

    def wait_for_abort(self, timeout_s: float = 10.0) -> list[str]:
        """Poll (the backend lives on the server's thread) until an abort is recorded."""
        deadline = time.monotonic() + timeout_s
        while not self.backend.aborted and time.monotonic() < deadline:
            time.sleep(0.01)
        return list(self.backend.aborted)


@contextmanager
def serve_app(backend: FakeBackend, **app_kwargs: Any) -> Iterator[Served]:
    """Run `create_app(backend, ByteTokenizer())` under uvicorn on a free localhost port."""
    metrics = RouterMetrics(CollectorRegistry(), backend.model_name)
    app = create_app(backend, ByteTokenizer(), metrics=metrics, **app_kwargs)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield Served(f"http://127.0.0.1:{port}", backend, metrics)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture
def served() -> Iterator[Served]:
    """The app over a default FakeBackend (tokens "abc " repeated, context 4096)."""
    with serve_app(FakeBackend(cached_tokens=2)) as s:
        yield s


@pytest.fixture
def serve() -> Iterator[Callable[..., Served]]:
    """Factory for tests that need their own backend or app options."""
    with ExitStack() as stack:
        yield lambda backend, **kw: stack.enter_context(serve_app(backend, **kw))
