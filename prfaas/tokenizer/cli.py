"""`prfaas tokenizer export DIR`: the default model's tokenizer directory for client tools."""

from __future__ import annotations

import argparse

from prfaas.tokenizer.files import write_tokenizer_dir


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    export = sub.add_parser(
        "export",
        help="write tokenizer.json, tokenizer_config.json and special_tokens_map.json of the "
        "embedded byte-level model (what transformers' AutoTokenizer.from_pretrained(DIR) loads, "
        "offline)",
    )
    export.add_argument("dir", help="directory to write (created if missing)")


def run(args: argparse.Namespace) -> int:
    for path in write_tokenizer_dir(args.dir):
        print(path)
    return 0
