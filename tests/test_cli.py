"""Every `prfaas` subcommand resolves to a module that builds its argument parser."""

from __future__ import annotations

import pytest

from prfaas.cli import BENCH_TARGETS, COMMANDS, main


@pytest.mark.parametrize("argv", [[c] for c in COMMANDS] + [["bench", t] for t in BENCH_TARGETS])
def test_help_of_every_subcommand(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main([*argv, "--help"])
    assert done.value.code == 0
    assert "usage: prfaas" in capsys.readouterr().out


def test_unknown_subcommand_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as done:
        main(["no-such-command"])
    assert done.value.code == 2
