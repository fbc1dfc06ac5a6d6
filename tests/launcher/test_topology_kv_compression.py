"""The topology's [worker] kv_compression key reaches every worker's --kv-compression, and the
combinations that cannot work are refused when the topology is loaded."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from prfaas.launcher.deployment import Deployment
from prfaas.topology import Topology, TopologyError, load_topology
from prfaas.worker.options import PrefillWorkerOptions, add_worker_arguments


def _flag_values(specs: list, flag: str) -> dict[str, str]:
    return {
        spec.name: spec.argv[spec.argv.index(flag) + 1]
        for group in specs
        for spec in group
        if flag in spec.argv
    }


def test_key_round_trips_and_reaches_every_worker(tmp_path: Path) -> None:
    path = tmp_path / "topo.toml"
    path.write_text(
        Topology().to_toml().replace('kv_compression = "none"', 'kv_compression = "fp8"')
    )
    topo = load_topology(path)
    assert topo.kv_compression == "fp8"
    values = _flag_values(Deployment(topo, path, tmp_path / "logs").specs(), "--kv-compression")
    assert set(values) == {w.worker_id for w in topo.workers()}
    assert set(values.values()) == {"fp8"}
    # The flag the launcher writes is one the workers' parser accepts.
    parser = argparse.ArgumentParser()
    add_worker_arguments(parser, PrefillWorkerOptions)
    assert (
        parser.parse_args(["--worker-id", "w", "--kv-compression", "fp8"]).kv_compression == "fp8"
    )


def test_default_sends_no_flag(tmp_path: Path) -> None:
    specs = Deployment(Topology(), tmp_path / "t.toml", tmp_path / "logs").specs()
    assert not _flag_values(specs, "--kv-compression")


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"kv_compression": "fp4"}, "must be none, fp8 or int8"),
        ({"kv_compression": "int8", "backend": "emulated"}, "needs deployment.backend = torch"),
    ],
)
def test_impossible_settings_are_refused(kw: dict, message: str) -> None:
    with pytest.raises(TopologyError, match=message):
        Topology(**kw)
