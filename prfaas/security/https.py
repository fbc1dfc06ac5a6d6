"""HTTPS on the router's HTTP port (`/v1/*`, `/metrics`, `/ready`, `/health`): the certificate and
key files the router serves with, and the client side (a context trusting a given CA; `--ca-file`
for the tools that talk to the router).

The key is a secret like the others: read from a file that only its owner may read (checked here
before uvicorn loads it, so a group-readable key is refused with the same `chmod 600` hint). The
certificate is public. Under `prfaas up --tls` the router's development certificate (its SANs:
`router.prfaas`, `localhost`, `127.0.0.1` and the topology host) serves HTTPS too; a deployment
facing users would give a certificate from a public CA instead (`--https-cert/--https-key`).
"""

from __future__ import annotations

import argparse
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prfaas.security.secret_files import InsecureSecretFile, check_private


@dataclass(frozen=True)
class HttpsFiles:
    cert: str
    key: str

    def uvicorn_options(self) -> dict[str, Any]:
        """What `uvicorn.Config` takes to serve TLS with these files."""
        return {"ssl_certfile": self.cert, "ssl_keyfile": self.key}


def add_https_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--https-cert", help="serve the HTTP port over TLS: certificate (PEM)")
    group.add_argument("--https-key", help="its private key (PEM, mode 0600)")


def https_from_args(args: argparse.Namespace) -> HttpsFiles | None:
    """The HTTPS files, None when neither option is set; exits with a clear message when only one
    is, when the key is readable by others, or when the pair does not load."""
    cert, key = getattr(args, "https_cert", None), getattr(args, "https_key", None)
    if not cert and not key:
        return None
    if not (cert and key):
        raise SystemExit("HTTPS needs both --https-cert and --https-key")
    try:
        check_private(key)
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except (InsecureSecretFile, OSError, ssl.SSLError) as exc:
        raise SystemExit(f"HTTPS: {exc}") from exc
    return HttpsFiles(cert, key)


def client_context(ca_file: str | None) -> ssl.SSLContext | None:
    """A client context verifying the server against `ca_file` (None: no custom trust)."""
    return ssl.create_default_context(cafile=ca_file) if ca_file else None


def add_ca_file_argument(parser: argparse._ActionsContainer) -> None:
    """`--ca-file` for a tool that talks to the router (prfaas top, prfaas bench serve)."""
    parser.add_argument(
        "--ca-file",
        help="trust this CA (PEM) for the router's HTTPS, e.g. the dev CA `prfaas up --tls` "
        "prints; default: the system's trust store",
    )


def trust_ca_file(ca_file: str | None) -> None:
    """Make every HTTPS client of this process verify servers against `ca_file` instead of the
    default trust store: httpx (which every tool uses, in several places) and Python's ssl
    defaults read SSL_CERT_FILE when they build a context. Exits with a one-line message when the
    file is not a readable PEM bundle; None changes nothing."""
    if not ca_file:
        return
    try:
        ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise SystemExit(f"--ca-file {ca_file}: not a readable PEM CA bundle ({exc})") from exc
    os.environ["SSL_CERT_FILE"] = str(Path(ca_file).resolve())
