"""Text on the HTTP side: the tokenizer the front end is given, the chat template, stop strings.

The front end never imports a concrete tokenizer; the caller injects anything that satisfies
`Tokenizer` (`prfaas/tokenizer/`: the byte-level one or a checkpoint's in production, a fixture in
tests).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class StreamDecoder(Protocol):
    """Turns a growing sequence of token ids into text, one chunk at a time (one per request)."""

    def push(self, token_ids: Sequence[int]) -> str:
        """Add new ids; return the newly completed text. Never returns part of a multi-byte
        UTF-8 character: incomplete bytes are held until the next push or `flush`."""
        ...

    def flush(self) -> str:
        """Called once after the last push; returns whatever is still held (may be lossy)."""
        ...


class Tokenizer(Protocol):
    """What the HTTP layer needs from a tokenizer."""

    @property
    def eos_token_id(self) -> int: ...

    @property
    def vocab_size(self) -> int:
        """Valid token ids are `0 <= id < vocab_size` (used to validate token-id prompts)."""
        ...

    def encode(self, text: str) -> list[int]:
        """Prompt text to the ids the model sees (including any BOS the model expects)."""
        ...

    def decode(self, token_ids: Sequence[int]) -> str: ...

    def stream_decoder(self) -> StreamDecoder:
        """A fresh incremental decoder for one request's generated ids."""
        ...


def content_text(content: str | Sequence[object] | None) -> str:
    """Message content as text: a string, or the `text` of each `{"type": "text"}` part."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts: list[str] = []
    for part in content:
        text = part.get("text") if isinstance(part, dict) else getattr(part, "text", None)
        if not isinstance(text, str):
            raise ValueError("only text content parts are supported")
        parts.append(text)
    return "".join(parts)


def render_chat(messages: Sequence[tuple[str, str | Sequence[object] | None]]) -> str:
    """Render (role, content) messages with prfaas's plain chat template.

    Each message becomes `<|role|>\\n{content}\\n`, and the prompt ends with `<|assistant|>\\n`
    so the model continues as the assistant. The byte-level model has no special chat tokens, so
    the template is ordinary text and identical messages always render to identical prompts
    (which keeps multi-turn conversations prefix-cacheable).
    """
    lines = [f"<|{role}|>\n{content_text(content)}\n" for role, content in messages]
    return "".join(lines) + "<|assistant|>\n"


class StopStringMatcher:
    """Finds the client's stop strings in streamed text without emitting past a match.

    Text that could still be the beginning of a stop string is held back (at most the longest
    stop string minus one character), so a stop string split across tokens is still caught and
    never shown to the client.
    """

    def __init__(self, stop_strings: Sequence[str]) -> None:
        self._stops = [s for s in stop_strings if s]
        self._max_held = max((len(s) for s in self._stops), default=1) - 1
        self._held = ""
        self.matched: str | None = None
        """The stop string that ended the text, once one has been found."""

    def feed(self, text: str) -> str:
        """Add decoded text; return the part that is safe to emit now."""
        if self.matched is not None:
            return ""
        buffer = self._held + text
        hits = [(buffer.find(s), s) for s in self._stops]
        hits = [(pos, s) for pos, s in hits if pos >= 0]
        if hits:
            pos, self.matched = min(hits)
            self._held = ""
            return buffer[:pos]
        cut = max(len(buffer) - self._max_held, 0)
        self._held = buffer[cut:]
        return buffer[:cut]

    def flush(self) -> str:
        """Return the held-back text at the end of generation (no stop string matched)."""
        held, self._held = self._held, ""
        return held
