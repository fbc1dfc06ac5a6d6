"""A checkpoint directory's own tokenizer (`tokenizer.json` through the `tokenizers` library),
its chat template and its stop ids. Torch-free: the router loads it.

Reads `tokenizer.json`, `tokenizer_config.json` (special tokens, `add_bos_token`, the chat
template, or `chat_template.jinja` beside it as transformers 5 saves it) and the EOS ids from
`generation_config.json` (else `config.json`, else the tokenizer's `eos_token`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from prfaas.tokenizer.hf_chat import ChatTemplate

SPECIAL_TOKEN_KEYS = ("bos_token", "eos_token", "pad_token", "unk_token")


def _token_text(value: object) -> str | None:
    """tokenizer_config.json writes a special token as a string or {"content": ...}."""
    if isinstance(value, dict):
        return value.get("content")
    return value if isinstance(value, str) else None


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def _chat_template_source(root: Path, cfg: dict[str, Any]) -> str | None:
    jinja_file = root / "chat_template.jinja"
    if jinja_file.exists():
        return jinja_file.read_text(encoding="utf-8")
    template = cfg.get("chat_template")
    if isinstance(template, list):  # named templates: use "default"
        named = {t.get("name"): t.get("template") for t in template}
        template = named.get("default")
    return template if isinstance(template, str) else None


class HFTokenizer:
    """Satisfies the router's `Tokenizer` protocol (prfaas/router/openai_text.py) and adds
    `render_chat` (the checkpoint's template) and every EOS id."""

    def __init__(self, root: str | Path, vocab_size: int | None = None) -> None:
        root = Path(root)
        self._tok = Tokenizer.from_file(str(root / "tokenizer.json"))
        cfg = _read_json(root / "tokenizer_config.json")
        self.special_tokens = {k: _token_text(cfg.get(k)) for k in SPECIAL_TOKEN_KEYS}
        bos = self.special_tokens["bos_token"]
        self._bos_id = self._tok.token_to_id(bos) if bos and cfg.get("add_bos_token") else None
        model_cfg = _read_json(root / "config.json")
        gen = _read_json(root / "generation_config.json")
        eos_ids = gen.get("eos_token_id", model_cfg.get("eos_token_id"))
        if eos_ids is None and self.special_tokens["eos_token"]:
            eos_ids = self._tok.token_to_id(self.special_tokens["eos_token"])
        ids = [eos_ids] if isinstance(eos_ids, int) else list(eos_ids or [])
        self.eos_token_ids: tuple[int, ...] = tuple(int(i) for i in ids)
        text_cfg = model_cfg.get("text_config") or model_cfg
        # Prompt ids must index the embedding: the model's vocab_size (>= the tokenizer's).
        self.vocab_size = int(
            vocab_size or text_cfg.get("vocab_size") or self._tok.get_vocab_size(True)
        )
        source = _chat_template_source(root, cfg)
        self.chat_template = ChatTemplate(source, self.special_tokens) if source else None

    @property
    def eos_token_id(self) -> int:
        """The primary EOS id (-1 when the checkpoint names none)."""
        return self.eos_token_ids[0] if self.eos_token_ids else -1

    def encode(self, text: str) -> list[int]:
        ids = self._tok.encode(text, add_special_tokens=False).ids
        return [self._bos_id, *ids] if self._bos_id is not None else ids

    def decode(self, token_ids: Sequence[int]) -> str:
        return self._tok.decode(list(token_ids), skip_special_tokens=True)

    def render_chat(self, messages: list[dict[str, Any]]) -> str:
        if self.chat_template is None:
            raise ValueError("this checkpoint has no chat template; use /v1/completions")
        return self.chat_template.render(messages, add_generation_prompt=True)

    def stream_decoder(self) -> HFStreamDecoder:
        return HFStreamDecoder(self)


class HFStreamDecoder:
    """Incremental detokenization: decode the ids since the last emitted boundary and emit the new
    text once it no longer ends in an incomplete UTF-8 sequence (U+FFFD), the usual approach for
    byte-level BPE where one character can span tokens."""

    def __init__(self, tokenizer: HFTokenizer) -> None:
        self._tok = tokenizer
        self._ids: list[int] = []
        self._emitted = ""

    def push(self, token_ids: Sequence[int]) -> str:
        self._ids.extend(token_ids)
        text = self._tok.decode(self._ids)
        if text.endswith("\ufffd"):
            return ""
        new, self._emitted = text[len(self._emitted) :], text
        return new

    def flush(self) -> str:
        text = self._tok.decode(self._ids)
        new, self._emitted = text[len(self._emitted) :], text
        return new
