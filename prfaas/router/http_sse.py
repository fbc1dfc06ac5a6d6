"""Client-connection plumbing: SSE framing and turning a client disconnect into cancellation.

A client that goes away must abort its request everywhere. Both helpers here watch the ASGI
`http.disconnect` message themselves (instead of relying on the server version's behaviour) and
cancel the work in progress; the generation's own cleanup then calls `backend.abort`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, Awaitable, Mapping
from typing import Any, TypeVar

import anyio
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

T = TypeVar("T")
DONE = b"data: [DONE]\n\n"


class ClientDisconnected(Exception):
    """The client closed the connection before the response was ready."""


def sse_event(obj: Mapping[str, Any]) -> bytes:
    """One SSE event: a `data:` line holding compact JSON, then a blank line."""
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


async def _wait_for_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def cancel_on_disconnect(request: Request, awaitable: Awaitable[T]) -> T:
    """Await `awaitable`, cancelling it if the client disconnects meanwhile.

    Called by handlers for work done before the response starts (a whole non-streaming
    generation, or the wait for a stream's first token). The request body must already be read.
    Raises `ClientDisconnected` when the client went away.
    """
    current = asyncio.current_task()
    assert current is not None
    disconnected = False

    async def watch() -> None:
        nonlocal disconnected
        await _wait_for_disconnect(request.receive)
        disconnected = True
        current.cancel()

    watcher = asyncio.create_task(watch())
    try:
        return await awaitable
    except asyncio.CancelledError:
        if not disconnected:
            raise
        current.uncancel()
        raise ClientDisconnected from None
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher


class SSEResponse(Response):
    """A `text/event-stream` response over an async generator of JSON objects, ending in
    `data: [DONE]`. When the client disconnects, the iterator is cancelled and closed."""

    media_type = "text/event-stream"

    def __init__(self, events: AsyncGenerator[Mapping[str, Any], None]) -> None:
        # No body attribute: the headers then carry no Content-Length (chunked encoding).
        self.status_code = 200
        self.background = None
        self.init_headers({"Cache-Control": "no-cache"})
        self._events = events

    async def _stream(self, send: Send) -> None:
        try:
            async for obj in self._events:
                await send(
                    {"type": "http.response.body", "body": sse_event(obj), "more_body": True}
                )
            await send({"type": "http.response.body", "body": DONE, "more_body": False})
        except OSError:
            # The server reports a vanished client by failing the write.
            pass
        finally:
            with anyio.CancelScope(shield=True):
                await self._events.aclose()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        streamer = asyncio.create_task(self._stream(send))
        watcher = asyncio.create_task(_wait_for_disconnect(receive))
        try:
            await asyncio.wait({streamer, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watcher.cancel()
            streamer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await streamer
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
