"""Byte-level tokenizer: lossless round trip, streaming decode, Hugging Face export."""

from __future__ import annotations

from pathlib import Path

import pytest
import tokenizers

from prfaas.tokenizer.byte_level import ByteTokenizer, IncrementalDecoder, export_hf_tokenizer_json
from prfaas.tokenizer.special_tokens import BOS_ID, EOS_ID

TEXTS = ["hello world", "héllo — 日本語 🎉", "  a\n\tb\r\n", "", "\x00\x7f"]


@pytest.mark.parametrize("text", TEXTS)
def test_round_trip(text: str) -> None:
    tok = ByteTokenizer()
    ids = tok.encode(text, add_bos=True)
    assert ids[0] == BOS_ID and len(ids) == len(text.encode()) + 1
    assert tok.decode(ids + [EOS_ID]) == text


def test_incremental_decoder_never_splits_a_character() -> None:
    text = "a日🎉b"
    dec = IncrementalDecoder()
    pieces = [dec.feed(i) for i in ByteTokenizer().encode(text)]
    assert "".join(pieces) + dec.flush() == text
    assert pieces[1:4] == ["", "", "日"]
    assert all("\ufffd" not in p for p in pieces)


def test_invalid_utf8_fragment_is_replaced_not_raised() -> None:
    assert ByteTokenizer().decode([0xE6, 0x97]) == "\ufffd"
    dec = IncrementalDecoder()
    assert dec.feed(0xE6) == ""
    assert dec.flush() == "\ufffd"


@pytest.mark.parametrize("text", TEXTS)
def test_hf_export_counts_the_same_tokens(text: str, tmp_path: Path) -> None:
    hf = tokenizers.Tokenizer.from_file(str(export_hf_tokenizer_json(tmp_path / "tokenizer.json")))
    ids = hf.encode(text, add_special_tokens=False).ids
    assert ids == ByteTokenizer().encode(text)
    assert hf.decode(ids) == text
    assert hf.token_to_id("<|eos|>") == EOS_ID
