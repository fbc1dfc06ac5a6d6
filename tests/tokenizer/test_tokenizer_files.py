"""The byte-level model's tokenizer directory: `prfaas tokenizer export`, the shipped copy, and
transformers' AutoTokenizer loading it offline to encode and decode as the router does."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoTokenizer

from prfaas.cli import main
from prfaas.data import TOKENIZER_FILES, tokenizer_dir
from prfaas.tokenizer.byte_level import ByteTokenizer
from prfaas.tokenizer.files import write_tokenizer_dir
from prfaas.tokenizer.special_tokens import BOS_ID, EOS_ID, PAD_ID

TEXTS = ["hello", "héllo wörld, 日本語 🎉", "  two  spaces\n\ttab", "<|eos|> as text", ""]


def test_shipped_files_equal_a_fresh_export(tmp_path: Path) -> None:
    write_tokenizer_dir(tmp_path)
    for name in TOKENIZER_FILES:
        assert (tokenizer_dir() / name).read_bytes() == (tmp_path / name).read_bytes(), (
            f"prfaas/data/tokenizer/{name} is stale: rerun `prfaas tokenizer export "
            "prfaas/data/tokenizer`"
        )


def test_cli_export_loads_in_autotokenizer_offline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "tok"
    assert main(["tokenizer", "export", str(out)]) == 0
    assert capsys.readouterr().out.split() == [str(out / name) for name in TOKENIZER_FILES]
    hf = AutoTokenizer.from_pretrained(str(out), local_files_only=True)
    ours = ByteTokenizer()
    assert (hf.bos_token_id, hf.eos_token_id, hf.pad_token_id) == (BOS_ID, EOS_ID, PAD_ID)
    for text in TEXTS:
        ids = hf(text)["input_ids"]
        # The router prepends BOS to every prompt: a client counting tokens sees the same ids.
        assert ids == ours.encode(text, add_bos=True)
        assert hf.decode(ids, skip_special_tokens=True) == text
        assert hf(text, add_special_tokens=False)["input_ids"] == ours.encode(text)
    assert hf.decode([BOS_ID, 104, 105, EOS_ID]) == "<|bos|>hi<|eos|>"
