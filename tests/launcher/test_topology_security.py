"""The topology's `[security]` section: parsed and checked, carried through the effective topology,
merged with `prfaas up`'s options, and turned into the children's arguments by the launcher."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from prfaas.launcher.deployment import Deployment
from prfaas.topology import DEFAULT_TOPOLOGY, SecuritySpec, TopologyError, load_topology


def _topology_with(tmp_path: Path, section: str) -> Path:
    path = tmp_path / "topology.toml"
    path.write_text("[security]\n" + section)  # every other setting at its default
    return path


def test_default_is_token_only_with_kv_tls_following_tls() -> None:
    assert load_topology(DEFAULT_TOPOLOGY).security == SecuritySpec(
        tls=False, kv_tls=True, api_key_file="", generate_api_key=False
    )


def test_section_is_read_and_the_key_file_is_relative_to_the_topology(tmp_path: Path) -> None:
    path = _topology_with(tmp_path, 'tls = true\nkv_tls = false\napi_key_file = "keys/api"\n')
    sec = load_topology(path).security
    assert sec.tls and not sec.kv_tls and not sec.generate_api_key
    assert sec.api_key_file == str(tmp_path / "keys" / "api")


def test_the_effective_topology_keeps_the_section(tmp_path: Path) -> None:
    topo = load_topology(_topology_with(tmp_path, "tls = true\ngenerate_api_key = true\n"))
    copy = tmp_path / "effective.toml"
    copy.write_text(topo.to_toml())
    assert load_topology(copy) == topo


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ('tls = "yes"\n', "security.tls"),
        ("api_key_file = 3\n", "security.api_key_file"),
        ("token = 'x'\n", "security.token: unknown key"),
    ],  # fmt: skip
)
def test_bad_values_name_the_key(tmp_path: Path, section: str, message: str) -> None:
    with pytest.raises(TopologyError, match=message):
        load_topology(_topology_with(tmp_path, section))


def test_options_only_add_to_the_section() -> None:
    assert SecuritySpec().with_options(secure=True) == SecuritySpec(tls=True, generate_api_key=True)
    assert SecuritySpec(tls=True).with_options().tls
    named = SecuritySpec(api_key_file="/a").with_options(api_key_file="/b")
    assert named.api_key_file == "/b"


def _argv_of(dep: Deployment, name: str) -> list[str]:
    return next(s.argv for group in dep.specs() for s in group if s.name == name)


def test_the_launcher_applies_the_section(tmp_path: Path) -> None:
    keys = tmp_path / "api.keys"
    keys.write_text("k1\n")
    os.chmod(keys, 0o600)
    section = f'tls = true\nkv_tls = false\napi_key_file = "{keys}"\n'
    topo = load_topology(_topology_with(tmp_path, section))
    dep = Deployment(topo, DEFAULT_TOPOLOGY, tmp_path / "logs")
    try:
        router = _argv_of(dep, "router")
        assert "--https-cert" in router and "--tls-cert" in router
        assert router[router.index("--api-key-file") + 1] == str(keys)
        pd0 = _argv_of(dep, "pd-0")
        assert "--tls-cert" in pd0 and "--kv-tls" not in pd0  # kv_tls = false
        assert dep.endpoints().http.startswith("https://")
    finally:
        dep.secrets.remove()


def test_no_section_keeps_plain_http_and_token(tmp_path: Path) -> None:
    dep = Deployment(load_topology(DEFAULT_TOPOLOGY), DEFAULT_TOPOLOGY, tmp_path / "logs")
    try:
        router = _argv_of(dep, "router")
        assert "--auth-token-file" in router and "--https-cert" not in router
        assert "--api-key-file" not in router
        assert dep.endpoints().http.startswith("http://")
    finally:
        dep.secrets.remove()
