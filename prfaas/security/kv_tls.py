"""TLS contexts for the KV channel (`--kv-tls`), from the same files as gRPC mTLS.

Both ends present certificates signed by the deployment CA (mutual). The sender does not check
the receiver's host name: it often connects through a link relay whose address is not the
receiver's; a certificate from the deployment CA is what it requires, and the KV handshake's HMAC
secret still authenticates each connection on top.
"""

from __future__ import annotations

import argparse
import ssl

from prfaas.security.secret_files import check_private


def _context(purpose: ssl.Purpose, args: argparse.Namespace) -> ssl.SSLContext:
    ctx = ssl.create_default_context(purpose, cafile=args.tls_ca)
    ctx.load_cert_chain(args.tls_cert, str(check_private(args.tls_key)))
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def kv_tls_enabled(args: argparse.Namespace) -> bool:
    if not getattr(args, "kv_tls", False):
        return False
    if not (args.tls_cert and args.tls_key and args.tls_ca):
        raise SystemExit("--kv-tls needs --tls-cert, --tls-key and --tls-ca")
    return True


def receiver_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    """The KV receiver's context (requires the sender's certificate), None without --kv-tls."""
    return _context(ssl.Purpose.CLIENT_AUTH, args) if kv_tls_enabled(args) else None


def sender_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    if not kv_tls_enabled(args):
        return None
    ctx = _context(ssl.Purpose.SERVER_AUTH, args)
    ctx.check_hostname = False
    return ctx
