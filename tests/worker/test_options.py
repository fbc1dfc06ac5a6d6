"""Worker options (prfaas/worker/options.py): one pydantic model per worker kind, the command line
generated from it, unknown keys and wrong types refused, and a bad combination printed by
`prfaas` as one line naming the flag."""

from __future__ import annotations

import argparse

import pytest
from pydantic import ValidationError

from prfaas.cli import main
from prfaas.roles import PD_ROLES
from prfaas.worker.options import (
    PDWorkerOptions,
    PrefillWorkerOptions,
    WorkerOptions,
    add_worker_arguments,
    options_from_args,
)


def _parser(options: type[WorkerOptions]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_worker_arguments(parser, options)
    return parser


@pytest.mark.parametrize("options", [PrefillWorkerOptions, PDWorkerOptions])
def test_every_field_is_a_flag_with_its_default(options: type[WorkerOptions]) -> None:
    parsed = options_from_args(options, _parser(options).parse_args(["--worker-id", "w"]))
    assert parsed == options(worker_id="w")
    flags = {a.dest: a for a in _parser(options)._actions}
    for name, info in options.model_fields.items():
        assert name in flags, name
        assert flags[name].help == info.description and info.description, name


def test_the_two_kinds_differ_in_ports_and_role() -> None:
    prefill, pd = PrefillWorkerOptions(worker_id="p"), PDWorkerOptions(worker_id="d")
    assert (prefill.grpc_port, prefill.kv_port) == (50100, 0)
    assert (pd.grpc_port, pd.kv_port, pd.role) == (50200, 50300, "mixed")
    assert "role" not in PrefillWorkerOptions.model_fields
    assert _parser(PDWorkerOptions).parse_args(["--worker-id", "d", "--role", "decode"]).role == (
        "decode"
    )
    role = next(a for a in _parser(PDWorkerOptions)._actions if a.dest == "role")
    assert tuple(role.choices or ()) == PD_ROLES


def test_flags_keep_their_types() -> None:
    argv = ["--worker-id", "w", "--threads", "2", "--cache-budget-mb", "64", "--grpc-port", "7"]
    parsed = options_from_args(PDWorkerOptions, _parser(PDWorkerOptions).parse_args(argv))
    assert (parsed.threads, parsed.cache_budget_mb, parsed.grpc_port) == (2, 64.0, 7)
    assert PDWorkerOptions(worker_id="w").threads is None


def test_unknown_keys_and_wrong_types_are_refused() -> None:
    with pytest.raises(ValidationError, match="bogus"):
        PDWorkerOptions(worker_id="w", bogus=1)
    with pytest.raises(ValidationError, match="grpc_port"):
        PDWorkerOptions(worker_id="w", grpc_port="50200")
    with pytest.raises(ValidationError, match="--role: must be one of mixed, prefill, decode"):
        PDWorkerOptions(worker_id="w", role="prfaas")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--backend", "emulated"], "--backend emulated needs --profile CSV"),
        (
            ["--backend", "emulated", "--profile", "p.csv", "--kv-compression", "fp8"],
            "--kv-compression needs float KV: the torch backend, or the emulated one with "
            "--kv-dtype bfloat16, float16 or float32 (uint8 KV is not data)",
        ),
    ],
)
def test_a_bad_combination_is_one_line_from_prfaas(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["pd-worker", "--worker-id", "pd-0", *argv]) == 2
    assert capsys.readouterr().err == f"prfaas pd-worker: {message}\n"


def test_addresses_default_to_host_and_port() -> None:
    o = PDWorkerOptions(worker_id="d", host="10.0.0.2")
    assert (o.grpc_address, o.kv_address) == ("10.0.0.2:50200", "10.0.0.2:50300")
    o = PDWorkerOptions(worker_id="d", grpc_advertise="pd-0:1", kv_advertise="pd-0:2")
    assert (o.grpc_address, o.kv_address) == ("pd-0:1", "pd-0:2")
