"""A checkpoint's chat template rendered the way transformers renders it (torch-free).

Same jinja2 environment as transformers' `apply_chat_template` (utils/chat_template_utils.py,
transformers 5.x, Apache-2.0): a sandboxed environment with trim_blocks, lstrip_blocks and
loopcontrols; `tojson` without HTML escaping; `raise_exception`, `strftime_now`; variables
`messages`, `add_generation_prompt`, `tools`, `documents` and the special tokens by name. The
template is untrusted input (it comes with the checkpoint), hence the immutable sandbox.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment


def _raise_exception(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


def _tojson(
    x: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    return json.dumps(
        x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


class ChatTemplate:
    """One compiled template; `render` is safe to call from several threads."""

    def __init__(self, source: str, special_tokens: dict[str, str | None]) -> None:
        env = ImmutableSandboxedEnvironment(
            trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols]
        )
        env.filters["tojson"] = _tojson
        env.globals["raise_exception"] = _raise_exception
        env.globals["strftime_now"] = _strftime_now
        self._template = env.from_string(source)
        self._special = dict(special_tokens)

    def render(self, messages: list[dict[str, Any]], add_generation_prompt: bool = True) -> str:
        """Messages as [{"role": ..., "content": ...}] -> prompt text. A template that refuses the
        conversation (raise_exception) raises ValueError with its message."""
        try:
            return self._template.render(
                messages=messages,
                tools=None,
                documents=None,
                add_generation_prompt=add_generation_prompt,
                **self._special,
            )
        except jinja2.exceptions.TemplateError as exc:
            raise ValueError(f"chat template: {exc}") from exc
