"""One process's gRPC credentials: who it is, and the token or certificates that prove it.

Two modes, chosen by which files the process was given:
- mTLS (`--tls-cert/--tls-key/--tls-ca`): servers require a client certificate signed by the CA
  and read the caller's identity from it; clients verify the server's certificate and its name.
- token (`--auth-token-file`): plaintext gRPC; every call carries `authorization: Bearer <token>`
  and the identity it claims (`x-prfaas-identity`). Any holder of the token can claim any
  identity, so this proves membership of the deployment, not which member; use mTLS across
  untrusted networks (the token also travels in clear).
With neither, the process is open (`credentials` is None) and may bind loopback only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc

from prfaas.security.secret_files import read_secret

TOKEN_HEADER = "authorization"
IDENTITY_HEADER = "x-prfaas-identity"
API_KEY_HEADER = "x-api-key"


@dataclass(frozen=True)
class TlsMaterial:
    cert: bytes
    key: bytes
    ca: bytes

    @classmethod
    def load(cls, cert: str | Path, key: str | Path, ca: str | Path) -> TlsMaterial:
        # The key is a secret (permissions checked); the certificates are public.
        return cls(Path(cert).read_bytes(), read_secret(key), Path(ca).read_bytes())


@dataclass(frozen=True)
class GrpcCredentials:
    identity: str
    """This process's identity (identities.ROUTER, identities.worker(id), ...)."""
    token: bytes | None = None
    tls: TlsMaterial | None = None

    def __post_init__(self) -> None:
        if self.token is None and self.tls is None:
            raise ValueError("credentials need a token or TLS material")

    def server_credentials(self) -> grpc.ServerCredentials:
        assert self.tls is not None
        return grpc.ssl_server_credentials(
            [(self.tls.key, self.tls.cert)], root_certificates=self.tls.ca, require_client_auth=True
        )

    def channel_credentials(self) -> grpc.ChannelCredentials:
        assert self.tls is not None
        return grpc.ssl_channel_credentials(self.tls.ca, self.tls.key, self.tls.cert)

    def call_metadata(self) -> tuple[tuple[str, str], ...]:
        """What token mode adds to every call (nothing under mTLS: the certificate speaks)."""
        if self.tls is not None or self.token is None:
            return ()
        return ((TOKEN_HEADER, f"Bearer {self.token.decode()}"), (IDENTITY_HEADER, self.identity))


def load_credentials(
    identity: str,
    *,
    token_file: str | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    tls_ca: str | None = None,
) -> GrpcCredentials | None:
    """Credentials from files (None when none are given). Raises ValueError on a partial TLS
    configuration or an unreadable / group- or world-readable secret file."""
    tls_files = (tls_cert, tls_key, tls_ca)
    if any(tls_files) and not all(tls_files):
        raise ValueError("mutual TLS needs all of --tls-cert, --tls-key and --tls-ca")
    tls = TlsMaterial.load(tls_cert, tls_key, tls_ca) if tls_cert and tls_key and tls_ca else None
    token = read_secret(token_file) if token_file else None
    if tls is None and token is None:
        return None
    return GrpcCredentials(identity, token, tls)
