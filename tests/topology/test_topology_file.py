"""The topology file's schema (prfaas/topology): every shipped file loads, unknown keys and wrong
types are refused with one line naming the key, and `prfaas` prints that line, not a traceback."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from prfaas.cli import main
from prfaas.data import data_file
from prfaas.topology import LinkSpec, Topology, TopologyError, load_topology
from prfaas.topology.layout import file_places

REPO = Path(__file__).resolve().parents[2]


def _shipped_topologies() -> list[Path]:
    """Every TOML file of the package data and deploy/ that is a topology (has a known section)."""
    candidates = [*data_file("topologies").glob("*.toml"), *(REPO / "deploy").rglob("*.toml")]
    sections = {at.section for _, at in file_places(Topology)}
    return [p for p in candidates if set(tomllib.loads(p.read_text())) & sections]


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "local.toml"
    path.write_text(text)
    return path


def test_the_shipped_topologies_are_all_found() -> None:
    names = {p.relative_to(REPO).as_posix() for p in _shipped_topologies()}
    assert {
        "prfaas/data/topologies/local.toml",
        "deploy/local.toml",
        "deploy/compose/topology.toml",
        "deploy/kubernetes/base/router/router.toml",
    } <= names


@pytest.mark.parametrize(
    "path", _shipped_topologies(), ids=lambda p: p.relative_to(REPO).as_posix()
)
def test_every_shipped_topology_loads_and_round_trips(path: Path, tmp_path: Path) -> None:
    topo = load_topology(path)
    assert topo.workers(), path
    assert load_topology(_file(tmp_path, topo.to_toml())) == topo


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[router]\nhttp_prot = 8000\n", "router.http_prot: unknown key"),
        ("[routr]\nhttp_port = 8000\n", r"\[routr\]: unknown section"),
        ("[link]\nspeed = 1\n", "link.speed: unknown key"),
        ("[security]\ntoken = 'x'\n", "security.token: unknown key"),
    ],
)
def test_unknown_keys_are_refused_by_name(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(TopologyError, match=rf"^topology .*local\.toml: {message}$"):
        load_topology(_file(tmp_path, text))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[router]\nhttp_port = "8000"\n', "router.http_port: expected an integer, got '8000'"),
        ("[prfaas]\nworkers = 1.5\n", "prfaas.workers: expected an integer, got 1.5"),
        ("[worker]\nblock_size = true\n", "worker.block_size: expected an integer, got True"),
        ('[link]\nrate_gbps = "fast"\n', "link.rate_gbps: expected a number, got 'fast'"),
        ("[security]\ntls = 1\n", "security.tls: expected true or false, got 1"),
        ('[pd]\nroles = ["prefill", "decode", 3]\n', r"pd.roles\[2\]: expected a string, got 3"),
        ('[pd]\nroles = ["prefill", "pd"]\n', r"pd.roles\[1\]: must be mixed, prefill or decode"),
        ('[pd]\nroles = "mixed"\n', "pd.roles: expected a list, got 'mixed'"),
        ("router = 3\n", r"router: expected a table"),
    ],
)
def test_a_wrong_type_is_one_line_naming_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(TopologyError, match=rf"^topology .*local\.toml: {message}") as info:
        load_topology(_file(tmp_path, text))
    assert "\n" not in str(info.value)


def test_an_integer_is_a_fine_number(tmp_path: Path) -> None:
    topo = load_topology(_file(tmp_path, "[link]\nrate_gbps = 10\n"))
    assert topo.link.rate_gbps == 10.0 and isinstance(topo.link.rate_gbps, float)


def test_settings_built_in_code_are_checked_the_same_way() -> None:
    with pytest.raises(TopologyError, match="^router.http_port: expected an integer"):
        Topology().replace(http_port="8000")
    with pytest.raises(TopologyError, match="^link.mode: must be relay, netns or none"):
        LinkSpec(mode="wire")
    with pytest.raises(TopologyError, match="^bogus: unknown key"):
        Topology(bogus=1)


def test_every_setting_has_one_place_in_the_file() -> None:
    places = [(at.section, at.key) for _, at in file_places(Topology)]
    assert len(places) == len(set(places))
    default = tomllib.loads(Topology().to_toml())
    assert sorted((s, k) for s, table in default.items() for k in table) == sorted(places)


def test_prfaas_prints_one_line_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = _file(tmp_path, '[router]\nhttp_port = "80a"\n')
    assert main(["certs", "--topology", str(bad), "--out", str(tmp_path / "certs")]) == 2
    err = capsys.readouterr().err
    assert (
        err == f"prfaas certs: topology {bad}: router.http_port: expected an integer, got '80a'\n"
    )
