"""The prefill -> decode handoff carried in the KV transfer's trailer (docs/architecture.md).

Protocol "first token shipped": the prefill side ran all N prompt tokens and sampled token N+1; the
trailer says which token and how many prompt tokens the cache covers, so the decode side can check
that it holds exactly the cache it expects before it feeds the first token at position N.
Format (versioned, little-endian): magic "PFHO", u16 version, u16 reserved, i32 first_token,
i32 num_prompt_tokens, i32 num_cached_tokens.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

_FORMAT = struct.Struct("<4sHHiii")
_MAGIC = b"PFHO"
VERSION = 1


class HandoffError(ValueError):
    """The trailer is malformed or does not match the request it arrived for."""


@dataclass(frozen=True)
class Handoff:
    first_token: int
    num_prompt_tokens: int
    # Prompt tokens the prefill side took from its prefix cache (reported in usage).
    num_cached_tokens: int = 0

    def encode(self) -> bytes:
        return _FORMAT.pack(
            _MAGIC, VERSION, 0, self.first_token, self.num_prompt_tokens, self.num_cached_tokens
        )

    @classmethod
    def decode(cls, data: bytes, expected_prompt_tokens: int) -> Handoff:
        if len(data) != _FORMAT.size:
            raise HandoffError(f"handoff trailer has {len(data)} bytes, expected {_FORMAT.size}")
        magic, version, _, first, num_prompt, num_cached = _FORMAT.unpack(data)
        if magic != _MAGIC or version != VERSION:
            raise HandoffError(f"bad handoff trailer (magic {magic!r}, version {version})")
        if num_prompt != expected_prompt_tokens:
            raise HandoffError(
                f"cache covers {num_prompt} prompt tokens, request has {expected_prompt_tokens}"
            )
        if first < 0:
            raise HandoffError(f"invalid first token {first}")
        return cls(first, num_prompt, num_cached)
