"""`prfaas` for a user: --version, PRFAAS_<COMMAND>_<OPTION> variables, Ctrl-C as one line."""

from __future__ import annotations

import argparse
import sys
import types

import pytest

from prfaas.cli import build_parser, main


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith("prfaas ")


def test_environment_sets_defaults_and_the_command_line_wins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PRFAAS_UP_LOG_DIR", "/tmp/from-env")
    monkeypatch.setenv("PRFAAS_UP_METRICS_BASE_PORT", "9500")
    monkeypatch.setenv("PRFAAS_UP_TLS", "yes")
    monkeypatch.setenv("PRFAAS_UP_POLICY", "naive-hetero")
    args = build_parser(["up"]).parse_args(["up"])
    assert (args.log_dir, args.metrics_base_port, args.tls, args.policy) == (
        "/tmp/from-env", 9500, True, "naive-hetero"
    )  # fmt: skip
    args = build_parser(["up"]).parse_args(["up", "--metrics-base-port", "9600"])
    assert args.metrics_base_port == 9600


def test_variables_are_per_command(monkeypatch: pytest.MonkeyPatch) -> None:
    # What `prfaas up` reads never reaches the children it starts (other commands).
    monkeypatch.setenv("PRFAAS_UP_POLICY", "naive-hetero")
    monkeypatch.setenv("PRFAAS_BENCH_SERVE_RATE", "2.5")
    assert build_parser(["router"]).parse_args(["router"]).policy != "naive-hetero"
    assert build_parser(["bench", "serve"]).parse_args(["bench", "serve"]).rate == 2.5


@pytest.mark.parametrize(
    ("name", "value"),
    [("PRFAAS_UP_POLICY", "fastest"), ("PRFAAS_UP_METRICS_BASE_PORT", "x"), ("PRFAAS_UP_TLS", "2")],
)
def test_a_bad_variable_is_a_usage_error_naming_it(
    name: str, value: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as done:
        build_parser(["up"])
    assert done.value.code == 2
    assert name in capsys.readouterr().err


def test_help_names_the_variables(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["up", "--help"])
    # argparse wraps help to the terminal's width: compare with the line breaks taken out.
    assert "[env PRFAAS_UP_API_KEY_FILE]" in " ".join(capsys.readouterr().out.split())


def test_ctrl_c_is_one_line_and_status_130(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(args: argparse.Namespace) -> int:
        raise KeyboardInterrupt

    fake = types.ModuleType("prfaas_fake_command")
    fake.add_arguments = lambda parser: None  # type: ignore[attr-defined]
    fake.run = interrupted  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "prfaas_fake_command", fake)
    monkeypatch.setitem(
        __import__("prfaas.cli").cli.COMMANDS, "fake", ("prfaas_fake_command", "a test command")
    )
    assert main(["fake"]) == 130
    assert capsys.readouterr().err == "prfaas fake: interrupted\n"
