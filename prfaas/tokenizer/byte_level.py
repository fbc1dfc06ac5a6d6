"""Byte-level tokenizer: ids 0-255 are UTF-8 bytes, 256 BOS, 257 EOS, 258 PAD.

Lossless for any text (one token per byte). `BytePromptTokenizer` is the same vocabulary as the
router serves it; `export_hf_tokenizer_json` writes it in the Hugging Face `tokenizers` format so
benchmark tools can count tokens offline.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Sequence
from pathlib import Path

from prfaas.tokenizer.special_tokens import BOS_ID, EOS_ID, NUM_TOKENIZER_IDS, PAD_ID

SPECIAL_TOKENS = {BOS_ID: "<|bos|>", EOS_ID: "<|eos|>", PAD_ID: "<|pad|>"}


class ByteTokenizer:
    """Stateless; safe to share between threads."""

    bos_id = BOS_ID
    eos_id = EOS_ID
    pad_id = PAD_ID

    def encode(self, text: str, *, add_bos: bool = False) -> list[int]:
        ids = list(text.encode("utf-8"))
        return [BOS_ID, *ids] if add_bos else ids

    def decode(self, ids: Sequence[int]) -> str:
        """Bytes to text, special and out-of-range ids dropped; invalid UTF-8 becomes U+FFFD."""
        return bytes(i for i in ids if 0 <= i < 256).decode("utf-8", errors="replace")

    def count(self, text: str) -> int:
        return len(text.encode("utf-8"))


class IncrementalDecoder:
    """Streaming detokenizer: `feed(id)` returns only complete characters, never half of a
    multi-byte UTF-8 sequence; `flush()` returns whatever is pending (U+FFFD for a broken tail)."""

    def __init__(self) -> None:
        self._dec = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, token_id: int) -> str:
        if not 0 <= token_id < 256:
            return ""
        return self._dec.decode(bytes([token_id]))

    def push(self, token_ids: Sequence[int]) -> str:
        """`feed` over several ids (the router's `StreamDecoder`)."""
        return "".join(self.feed(t) for t in token_ids)

    def flush(self) -> str:
        return self._dec.decode(b"", final=True)


class BytePromptTokenizer:
    """The byte-level vocabulary as the router serves it (its `Tokenizer` protocol,
    prfaas/router/openai_text.py): every prompt starts with BOS, a prompt may hold any id of the
    vocabulary, and streamed text never splits a character."""

    eos_token_id = EOS_ID
    vocab_size = NUM_TOKENIZER_IDS

    def __init__(self) -> None:
        self._tok = ByteTokenizer()

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_bos=True)

    def decode(self, token_ids: Sequence[int]) -> str:
        return self._tok.decode(token_ids)

    def stream_decoder(self) -> IncrementalDecoder:
        return IncrementalDecoder()


def _byte_to_unicode() -> dict[int, str]:
    """The printable-character alias of each byte used by byte-level BPE vocabularies: printable
    Latin-1 bytes map to themselves, the rest to code points from 256 upwards."""
    keep = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    mapping = {b: chr(b) for b in keep}
    extra = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


def _bos_template() -> dict[str, object]:
    bos = SPECIAL_TOKENS[BOS_ID]
    return {
        "type": "TemplateProcessing",
        "single": [
            {"SpecialToken": {"id": bos, "type_id": 0}},
            {"Sequence": {"id": "A", "type_id": 0}},
        ],
        "pair": [
            {"SpecialToken": {"id": bos, "type_id": 0}},
            {"Sequence": {"id": "A", "type_id": 0}},
            {"Sequence": {"id": "B", "type_id": 1}},
        ],
        "special_tokens": {bos: {"id": bos, "ids": [BOS_ID], "tokens": [bos]}},
    }


def export_hf_tokenizer_json(path: str | Path, *, add_bos: bool = False) -> Path:
    """Write a `tokenizers`-loadable tokenizer.json with the same ids (a BPE with no merges over
    the 256 byte aliases, plus the special tokens). `add_bos`: encoding with special tokens
    prepends BOS, as the router does to every prompt (what a client counting tokens must see).
    Returns the path."""
    alias = _byte_to_unicode()
    vocab = {alias[b]: b for b in range(256)}
    vocab.update({name: i for i, name in SPECIAL_TOKENS.items()})
    byte_level = {"add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    spec: dict[str, object] = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {
                "id": i,
                "content": name,
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "special": True,
            }
            for i, name in SPECIAL_TOKENS.items()
        ],
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", **byte_level},
        "post_processor": _bos_template() if add_bos else None,
        "decoder": {"type": "ByteLevel", **byte_level},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": vocab,
            "merges": [],
        },
    }
    out = Path(path)
    out.write_text(json.dumps(spec, ensure_ascii=False, indent=1), encoding="utf-8")
    return out
