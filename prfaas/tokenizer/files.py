"""The byte-level model's tokenizer as a Hugging Face tokenizer directory, for clients.

Standard benchmark and client tools (vLLM's benchmarks, transformers' AutoTokenizer, lm-eval)
want a tokenizer *directory*. `write_tokenizer_dir` writes one for the embedded byte-level model:
tokenizer.json (`byte_level.export_hf_tokenizer_json` with BOS prepended, as the router encodes
prompts), tokenizer_config.json (a plain PreTrainedTokenizerFast with the special tokens) and
special_tokens_map.json. The same files ship in prfaas/data/tokenizer (a test keeps them equal to
a fresh export) and the router serves them at GET /v1/tokenizer/<file>.
"""

from __future__ import annotations

import json
from pathlib import Path

from prfaas.data import TOKENIZER_FILES
from prfaas.tokenizer.byte_level import SPECIAL_TOKENS, export_hf_tokenizer_json
from prfaas.tokenizer.special_tokens import BOS_ID, EOS_ID, PAD_ID


def _special_tokens() -> dict[str, str]:
    return {
        "bos_token": SPECIAL_TOKENS[BOS_ID],
        "eos_token": SPECIAL_TOKENS[EOS_ID],
        "pad_token": SPECIAL_TOKENS[PAD_ID],
    }


def write_tokenizer_dir(directory: str | Path) -> list[Path]:
    """Write the three files into `directory` (created if missing); returns their paths."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    export_hf_tokenizer_json(out / "tokenizer.json", add_bos=True)
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        **_special_tokens(),
        # Byte-level: no spaces are added or removed around tokens on decode.
        "clean_up_tokenization_spaces": False,
        "add_bos_token": True,
        # The router encodes "<|eos|>" typed in a prompt as its bytes, never as the special id.
        "split_special_tokens": True,
    }
    for name, content in (("tokenizer_config.json", config),
                          ("special_tokens_map.json", _special_tokens())):  # fmt: skip
        (out / name).write_text(json.dumps(content, indent=1) + "\n", encoding="utf-8")
    return [out / name for name in TOKENIZER_FILES]
