"""Command-line options for credentials (router and workers), and loading them.

Every secret is a file path: contents of argv and the environment are visible to other local
users (`ps`, `/proc/PID/environ`).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable

from prfaas.security.api_keys import ApiKeys
from prfaas.security.credentials import GrpcCredentials, load_credentials
from prfaas.security.https import add_https_arguments
from prfaas.security.secret_files import InsecureSecretFile

log = logging.getLogger(__name__)


def add_security_arguments(parser: argparse.ArgumentParser, *, router: bool) -> None:
    g = parser.add_argument_group("security (secrets are read from files only)")
    g.add_argument("--auth-token-file", help="deployment token for gRPC (file, mode 0600)")
    g.add_argument("--tls-cert", help="this process's certificate (PEM) for mutual TLS")
    g.add_argument("--tls-key", help="its private key (PEM, mode 0600)")
    g.add_argument("--tls-ca", help="CA certificate (PEM) that signs every peer")
    g.add_argument(
        "--insecure",
        action="store_true",
        help="serve gRPC on a non-loopback address with no credentials (trusted networks only)",
    )
    if router:
        g.add_argument(
            "--api-key-file",
            help="API keys for /v1/* and Router.Generate, one per line (re-read on change/SIGHUP)",
        )
        add_https_arguments(g)
    else:
        g.add_argument("--kv-secret-file", help="KV-transfer HMAC secret (file, mode 0600)")
        g.add_argument(
            "--kv-tls", action="store_true", help="encrypt KV transfers with the --tls-* material"
        )


def credentials_from_args(
    args: argparse.Namespace, identity: Callable[[], str]
) -> GrpcCredentials | None:
    """This process's gRPC credentials (`identity()` names it, called only when credentials are
    configured); exits with a clear message on a bad secret file or identity."""
    if not (args.auth_token_file or args.tls_cert or args.tls_key or args.tls_ca):
        return None
    try:
        return load_credentials(
            identity(),
            token_file=args.auth_token_file,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            tls_ca=args.tls_ca,
        )
    except (ValueError, OSError) as exc:
        raise SystemExit(f"credentials: {exc}") from exc


def api_keys_from_args(args: argparse.Namespace) -> ApiKeys | None:
    """The router's API keys (`--api-key-file` and the legacy `--api-key`), None when neither."""
    static = [args.api_key] if getattr(args, "api_key", None) else []
    if static:
        log.warning("--api-key is visible to other local users (ps); prefer --api-key-file")
    if not args.api_key_file and not static:
        return None
    try:
        return ApiKeys(args.api_key_file, static)
    except (InsecureSecretFile, OSError) as exc:
        raise SystemExit(f"API keys: {exc}") from exc
