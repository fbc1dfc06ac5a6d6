"""Secrets from private files only; processes without credentials stay on loopback; API keys are
several and revocable without a restart."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from prfaas.launcher.probes import free_port
from prfaas.security.api_keys import ApiKeys
from prfaas.security.secret_files import InsecureSecretFile, read_secret


def router(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """A real `prfaas router` that is expected to refuse to start."""
    argv = [sys.executable, "-m", "prfaas.cli", "router", "--http-port", str(free_port()),
            "--grpc-port", str(free_port()), *extra]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=tmp_path)


def test_group_readable_token_file_is_refused(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    os.chmod(token, 0o640)
    with pytest.raises(InsecureSecretFile, match="chmod 600"):
        read_secret(token)
    done = router(tmp_path, "--auth-token-file", str(token))
    assert done.returncode != 0
    assert "readable by group/others" in done.stderr


def test_no_credentials_no_network_bind(tmp_path: Path) -> None:
    done = router(tmp_path, "--host", "0.0.0.0")
    assert done.returncode != 0
    assert "refusing to serve gRPC on 0.0.0.0" in done.stderr


def test_api_keys_are_revocable_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text("# team keys\nalpha\nbeta  # ci\n\n")
    os.chmod(path, 0o600)
    keys = ApiKeys(path, static=["legacy"])
    assert [keys.accepts(k) for k in ("alpha", "beta", "legacy", "gamma", "")] == [
        True, True, True, False, False,
    ]  # fmt: skip
    time.sleep(0.01)  # a distinct mtime
    path.write_text("beta\ngamma\n")
    assert not keys.accepts("alpha")  # revoked on change, no restart
    assert keys.accepts("gamma")
    os.chmod(path, 0o644)
    keys.reload()  # what SIGHUP does: a file gone insecure revokes every file key
    assert not keys.accepts("beta")
    assert keys.accepts("legacy")
