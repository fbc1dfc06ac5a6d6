"""One logging setup for every process: JSON lines with request ids, and prfaas up passing its
--log-level/--log-format to every child."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import pytest

from prfaas.cli import main
from prfaas.launcher.deployment import Deployment
from prfaas.log_setup import JsonLogFormatter, configure_logging
from prfaas.topology import DEFAULT_TOPOLOGY, load_topology

RID = "cmpl-" + "ab12" * 8


def record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("prfaas.router.dispatcher", logging.INFO, __file__, 1, msg, args, None)
    rec.__dict__.update(extra)
    return rec


def test_json_lines_carry_the_request_id_where_the_record_names_one() -> None:
    fmt = JsonLogFormatter()
    line = json.loads(fmt.format(record("request %s -> %s (%s)", RID, "offload", "offloaded")))
    assert line["request_id"] == RID and line["level"] == "INFO"
    assert line["message"] == f"request {RID} -> offload (offloaded)"
    assert json.loads(fmt.format(record("attempt %s-a1 failed", RID)))["request_id"] == f"{RID}-a1"
    assert json.loads(fmt.format(record("prefill", request_id="r-7")))["request_id"] == "r-7"
    assert "request_id" not in json.loads(fmt.format(record("short-term: t_eff=%d", 300)))


def test_configure_logging_json_writes_json_at_the_level(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging(argparse.Namespace(log_level="warning", log_format="json"))
    try:
        logging.getLogger("prfaas.test").info("hidden %s", RID)
        logging.getLogger("prfaas.test").warning("shown %s", RID)
        lines = capsys.readouterr().err.strip().splitlines()
        assert [json.loads(line)["message"] for line in lines] == [f"shown {RID}"]
    finally:
        configure_logging(argparse.Namespace(log_level="INFO", log_format="text"))


def test_up_passes_log_options_to_every_child(tmp_path: Path) -> None:
    topo = load_topology(DEFAULT_TOPOLOGY)
    child_args = ("--log-level", "DEBUG", "--log-format", "json")
    deployment = Deployment(topo, DEFAULT_TOPOLOGY, tmp_path, child_args=child_args)
    argvs = [spec.argv for group in deployment.specs() for spec in group]
    assert len(argvs) >= 4  # router, relays, prefill and PD workers
    for argv in argvs:
        assert argv[-4:] == list(child_args), argv


def test_up_help_says_why_there_is_no_api_key_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["up", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "There is no --api-key" in help_text and "--api-key-file" in help_text
    assert "--log-format {text,json}" in help_text and "--log-level" in help_text
