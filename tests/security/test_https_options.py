"""The router's `--https-cert/--https-key`: the key is checked like every other secret file, and a
half-given or mismatched pair is refused before the router binds anything."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from prfaas.security import certs, identities
from prfaas.security.https import HttpsFiles, https_from_args


def _args(cert: Path | None, key: Path | None) -> argparse.Namespace:
    return argparse.Namespace(
        https_cert=str(cert) if cert else None, https_key=str(key) if key else None
    )


@pytest.fixture
def router_files(tmp_path: Path) -> certs.CertFiles:
    return certs.write_identity(certs.new_authority(), identities.ROUTER, tmp_path / "tls")


def test_no_options_is_plain_http() -> None:
    assert https_from_args(_args(None, None)) is None


def test_a_private_key_and_its_certificate_are_accepted(router_files: certs.CertFiles) -> None:
    files = https_from_args(_args(router_files.cert, router_files.key))
    assert files == HttpsFiles(str(router_files.cert), str(router_files.key))
    assert files.uvicorn_options() == {
        "ssl_certfile": str(router_files.cert),
        "ssl_keyfile": str(router_files.key),
    }


def test_a_group_readable_key_is_refused(router_files: certs.CertFiles) -> None:
    router_files.key.chmod(0o640)
    with pytest.raises(SystemExit, match="chmod 600"):
        https_from_args(_args(router_files.cert, router_files.key))


def test_half_a_pair_is_refused(router_files: certs.CertFiles) -> None:
    with pytest.raises(SystemExit, match="both"):
        https_from_args(_args(router_files.cert, None))


def test_a_key_of_another_certificate_is_refused(
    router_files: certs.CertFiles, tmp_path: Path
) -> None:
    other = certs.write_identity(certs.new_authority(), identities.ROUTER, tmp_path / "other")
    with pytest.raises(SystemExit, match="HTTPS"):
        https_from_args(_args(router_files.cert, other.key))
