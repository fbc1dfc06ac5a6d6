"""The topology's `model` key (a checkpoint directory) reaches every torch worker and the router."""

from __future__ import annotations

from pathlib import Path

from prfaas.launcher.deployment import Deployment
from prfaas.topology import Topology, load_topology


def _argv_with(specs: list, flag: str) -> dict[str, str]:
    out = {}
    for group in specs:
        for spec in group:
            if flag in spec.argv:
                out[spec.name] = spec.argv[spec.argv.index(flag) + 1]
    return out


def test_model_key_round_trips_relative_to_the_file_and_reaches_workers_and_router(
    tmp_path: Path,
) -> None:
    ckpt = tmp_path / "ckpts" / "qwen"
    path = tmp_path / "topo.toml"
    text = Topology().to_toml().replace('model = ""', 'model = "ckpts/qwen"')
    path.write_text(text)
    topo = load_topology(path)
    assert topo.model == str(ckpt.resolve())
    specs = Deployment(topo, path, tmp_path / "logs").specs()
    models = _argv_with(specs, "--model")
    workers = {w.worker_id for w in topo.workers()}
    assert set(models) == workers | {"router"}
    assert set(models.values()) == {str(ckpt.resolve())}
    assert not _argv_with(specs, "--preset")


def test_default_topology_keeps_the_embedded_preset(tmp_path: Path) -> None:
    specs = Deployment(Topology(), tmp_path / "t.toml", tmp_path / "logs").specs()
    assert not _argv_with(specs, "--model")
    assert set(_argv_with(specs, "--preset").values()) == {"small"}
