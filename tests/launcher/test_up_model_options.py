"""`prfaas up --checkpoint FILE` and `--model DIR` reach the processes that load weights: the
options as `prfaas up` parses them, the deployment it builds, and each child's own parser."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from prfaas.launcher import up
from prfaas.pd_worker import main as pd_worker_main
from prfaas.prefill_worker import main as prefill_worker_main

WORKER_PARSERS = {"pd-worker": pd_worker_main, "prefill-worker": prefill_worker_main}


def _up_args(tmp_path: Path, *options: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    up.add_arguments(parser)
    return parser.parse_args([*options, "--log-dir", str(tmp_path / "logs")])


def _children(deployment) -> dict[str, argparse.Namespace]:  # noqa: ANN001
    """Each worker's argv parsed by that worker's own command-line parser."""
    parsed = {}
    for group in deployment.specs():
        for spec in group:
            command = spec.argv[spec.argv.index("prfaas.cli") + 1]
            if command not in WORKER_PARSERS:
                continue
            parser = argparse.ArgumentParser()
            WORKER_PARSERS[command].add_arguments(parser)
            parsed[spec.name] = parser.parse_args(spec.argv[spec.argv.index(command) + 1 :])
    return parsed


def test_checkpoint_reaches_every_worker_and_only_workers(tmp_path: Path) -> None:
    ckpt = tmp_path / "weights.safetensors"
    ckpt.write_bytes(b"placeholder: the launcher only passes the path on")
    deployment = up.build_deployment(_up_args(tmp_path, "--checkpoint", str(ckpt)))
    workers = _children(deployment)
    assert set(workers) == {w.worker_id for w in deployment.topo.workers()}
    assert {args.checkpoint for args in workers.values()} == {str(ckpt.resolve())}
    router = [s for g in deployment.specs() for s in g if s.name == "router"]
    assert router and "--checkpoint" not in router[0].argv


def test_model_option_reaches_every_worker_and_the_router(tmp_path: Path) -> None:
    model_dir = tmp_path / "Qwen3.5-0.8B"
    deployment = up.build_deployment(_up_args(tmp_path, "--model", str(model_dir)))
    workers = _children(deployment)
    assert {args.model for args in workers.values()} == {str(model_dir.resolve())}
    (router,) = [s for g in deployment.specs() for s in g if s.name == "router"]
    assert router.argv[router.argv.index("--model") + 1] == str(model_dir.resolve())


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--backend", "emulated"), "needs the torch backend"),
        (("--model", "some/dir"), "exclude each other"),
    ],
)
def test_checkpoint_refuses_what_cannot_load_it(
    tmp_path: Path, extra: tuple[str, ...], message: str
) -> None:
    ckpt = tmp_path / "w.safetensors"
    ckpt.write_bytes(b"x")
    with pytest.raises(up.TopologyError, match=message):
        up.build_deployment(_up_args(tmp_path, "--checkpoint", str(ckpt), *extra))


def test_missing_checkpoint_is_one_line_before_anything_starts(tmp_path: Path) -> None:
    args = _up_args(tmp_path, "--checkpoint", str(tmp_path / "nope.safetensors"))
    assert up.run(args) == 2
