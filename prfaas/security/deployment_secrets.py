"""Per-deployment credentials made by the launcher (`prfaas up`), handed to children as file paths.

A fresh private directory (0700, files 0600) holds the gRPC token, the KV-transfer HMAC secret and,
with `tls=True`, a development CA with one certificate per process (router and every worker); the
router's certificate also serves HTTPS on its HTTP port. With `generate_api_key=True` (and no
user-given key file) it also holds a fresh API key (`api.keys`) that the router requires on
`/v1/*`. Each child's argv names the files it needs; the secrets never appear in argv or the
environment. The directory is removed by `remove()` when the deployment stops.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from prfaas.security import identities
from prfaas.security.api_keys import parse_keys
from prfaas.security.credentials import GrpcCredentials, load_credentials
from prfaas.security.probes import grpc_ready_tls
from prfaas.security.secret_files import read_secret, write_private


@dataclass
class DeploymentSecrets:
    directory: Path
    token_file: Path
    kv_secret_file: Path
    tls_dir: Path | None = None
    api_key_file: Path | None = None
    kv_tls: bool = True
    """With TLS material: encrypt the KV channel too (False: HMAC-authenticated plaintext)."""

    @classmethod
    def create(
        cls,
        worker_ids: list[str],
        *,
        tls: bool = False,
        api_key_file: Path | None = None,
        kv_secret: str | None = None,
        generate_api_key: bool = False,
        router_hosts: tuple[str, ...] = (),
        kv_tls: bool = True,
    ) -> DeploymentSecrets:
        """`router_hosts`: the router's listen hosts, named in its certificate (HTTPS clients
        verify the host they connect to)."""
        directory = Path(tempfile.mkdtemp(prefix="prfaas-secrets-"))  # mode 0700
        token = write_private(directory / "grpc.token", secrets.token_urlsafe(32).encode())
        kv = write_private(directory / "kv.secret", (kv_secret or secrets.token_hex(32)).encode())
        tls_dir = None
        if tls:
            from prfaas.security import certs  # `cryptography`, only when asked for

            tls_dir = directory / "tls"
            ca = certs.new_authority()
            certs.write_authority(ca, tls_dir)  # ca.key 0600: to issue more (tools, tests)
            certs.write_identity(ca, identities.ROUTER, tls_dir, router_hosts)
            for identity in map(identities.worker, worker_ids):
                certs.write_identity(ca, identity, tls_dir)
        if generate_api_key and api_key_file is None:
            api_key_file = write_private(directory / "api.keys", secrets.token_urlsafe(32).encode())
        return cls(directory, token, kv, tls_dir, api_key_file, kv_tls)

    @property
    def ca_file(self) -> Path | None:
        """The deployment CA (what HTTPS and gRPC clients trust), None without TLS."""
        return None if self.tls_dir is None else self._tls_files(identities.ROUTER)[2]

    @property
    def http_scheme(self) -> str:
        return "http" if self.tls_dir is None else "https"

    def api_key(self) -> str | None:
        """The first API key in the key file (what the launcher prints and tests send)."""
        if self.api_key_file is None:
            return None
        keys = parse_keys(read_secret(self.api_key_file).decode())
        return keys[0].decode() if keys else None

    def _tls_files(self, identity: str) -> tuple[Path, Path, Path]:
        assert self.tls_dir is not None
        stem = identities.file_stem(identity)
        return self.tls_dir / f"{stem}.crt", self.tls_dir / f"{stem}.key", self.tls_dir / "ca.crt"

    def grpc_args(self, identity: str) -> list[str]:
        """What a process with `identity` needs to serve and call gRPC."""
        if self.tls_dir is None:
            return ["--auth-token-file", str(self.token_file)]
        cert, key, ca = self._tls_files(identity)
        return ["--tls-cert", str(cert), "--tls-key", str(key), "--tls-ca", str(ca)]

    def worker_args(self, worker_id: str) -> list[str]:
        args = [*self.grpc_args(identities.worker(worker_id))]
        args += ["--kv-secret-file", str(self.kv_secret_file)]
        return args + (["--kv-tls"] if self.tls_dir is not None and self.kv_tls else [])

    def router_args(self) -> list[str]:
        args = self.grpc_args(identities.ROUTER)
        if self.tls_dir is not None:  # HTTPS with the router's certificate (key 0600)
            cert, key, _ = self._tls_files(identities.ROUTER)
            args += ["--https-cert", str(cert), "--https-key", str(key)]
        return args + (["--api-key-file", str(self.api_key_file)] if self.api_key_file else [])

    def credentials(self, identity: str = identities.ROUTER) -> GrpcCredentials:
        """Credentials for the launcher, tests and tools to call processes as `identity`."""
        if self.tls_dir is None:
            creds = load_credentials(identity, token_file=str(self.token_file))
        else:
            cert, key, ca = self._tls_files(identity)
            creds = load_credentials(identity, tls_cert=str(cert), tls_key=str(key), tls_ca=str(ca))
        assert creds is not None
        return creds

    def worker_probe(self, address: str, worker_id: str) -> Callable[[], bool] | None:
        """The launcher's readiness probe of an mTLS worker (None without TLS: the plain one)."""
        if self.tls_dir is None:
            return None
        launcher = self.credentials()
        who = identities.worker(worker_id)
        return lambda: grpc_ready_tls(address, who, launcher)

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
