"""Every command-line option can also come from the environment: `PRFAAS_<COMMAND>_<OPTION>`.

`prfaas up --log-level debug` and `PRFAAS_UP_LOG_LEVEL=debug prfaas up` are the same; a flag on
the command line wins over the variable. The command is part of the name so that a variable meant
for `prfaas up` never changes the child processes it starts (they inherit its environment and are
`prfaas router`, `prfaas pd-worker`, ... commands of their own). Flags take 1/true/yes/on or
0/false/no/off; repeatable options take a comma-separated list. Each option's help names its
variable. The CLI (prfaas/cli.py) owns this module.
"""

from __future__ import annotations

import argparse
import os

TRUE = {"1", "true", "yes", "on"}
FALSE = {"0", "false", "no", "off", ""}


def env_name(command: str, action: argparse.Action) -> str:
    """PRFAAS_<COMMAND>_<DEST>, e.g. ('bench serve', --max-concurrency) -> PRFAAS_BENCH_SERVE_MAX_CONCURRENCY."""
    words = [*command.split(), action.dest]
    return "_".join(["PRFAAS", *(w.replace("-", "_").upper() for w in words)])


def _value(parser: argparse.ArgumentParser, action: argparse.Action, name: str, raw: str) -> object:
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        word = raw.strip().lower()
        if word not in TRUE | FALSE:
            parser.error(f"{name}={raw!r}: expected one of 1/true/yes/on or 0/false/no/off")
        on = word in TRUE
        return on if isinstance(action, argparse._StoreTrueAction) else not on
    convert = action.type if callable(action.type) else str
    items = [x.strip() for x in raw.split(",") if x.strip()]
    try:
        values = (
            [convert(x) for x in items]
            if isinstance(action, argparse._AppendAction)
            else [convert(raw)]
        )
    except (TypeError, ValueError) as exc:
        parser.error(f"{name}={raw!r}: {exc}")
    if action.choices is not None:
        for v in values:
            if v not in action.choices:
                parser.error(f"{name}={raw!r}: choose from {', '.join(map(str, action.choices))}")
    return values if isinstance(action, argparse._AppendAction) else values[0]


def apply_env_defaults(parser: argparse.ArgumentParser, command: str) -> None:
    """Name each option's variable in its help and take its default from the environment."""
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        if action.dest in (argparse.SUPPRESS, None):
            continue
        name = env_name(command, action)
        if action.help is not argparse.SUPPRESS:
            action.help = f"{action.help or ''} [env {name}]".strip()
        raw = os.environ.get(name)
        if raw is not None:
            action.default = _value(parser, action, name, raw)
            action.required = False
