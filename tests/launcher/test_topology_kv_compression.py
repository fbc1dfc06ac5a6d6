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
        ({"kv_compression": "int8", "backend": "emulated"}, "needs float KV"),
        ({"emulated_kv_dtype": "int4"}, "must be uint8, bfloat16, float16 or float32"),
    ],
)
def test_impossible_settings_are_refused(kw: dict, message: str) -> None:
    with pytest.raises(TopologyError, match=message):
        Topology(**kw)


def test_an_emulated_deployment_compresses_float_kv(tmp_path: Path) -> None:
    """emulated.kv_dtype = bfloat16 lays the emulated KV out as float rows (issue 16 item 2's
    experiment): compression is allowed, and every emulated worker gets both flags, which its
    options accept together."""
    topo = Topology(
        backend="emulated", emulated_kv_dtype="bfloat16", kv_compression="fp8",
        emulated_profile_prfaas="p.csv", emulated_profile_pd="p.csv",
    )  # fmt: skip
    specs = Deployment(topo, tmp_path / "t.toml", tmp_path / "logs").specs()
    dtypes = _flag_values(specs, "--kv-dtype")
    assert (
        set(dtypes)
        == {w.worker_id for w in topo.workers()}
        == set(_flag_values(specs, "--kv-compression"))
    )
    assert set(dtypes.values()) == {"bfloat16"}
    o = PrefillWorkerOptions(
        worker_id="w",
        backend="emulated",
        profile="p.csv",
        kv_dtype="bfloat16",
        kv_compression="fp8",
    )
    assert (o.kv_dtype, o.kv_compression) == ("bfloat16", "fp8")
    # A uint8 (default) emulated deployment sends no --kv-dtype.
    plain = Topology(
        backend="emulated", emulated_profile_prfaas="p.csv", emulated_profile_pd="p.csv"
    )
    assert not _flag_values(
        Deployment(plain, tmp_path / "t.toml", tmp_path / "l").specs(), "--kv-dtype"
    )
