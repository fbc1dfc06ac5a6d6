"""A development CA and per-process certificates for mutual TLS (`prfaas certs`, `prfaas up --tls`).

Each leaf certificate carries its identity twice: as a URI SAN (`spiffe://prfaas/worker/pd-0`,
what servers authorize) and as a DNS SAN (`pd-0.worker.prfaas`, what clients verify against the
server they meant to reach); plus `localhost`/`127.0.0.1` and any listen hosts, so plain TLS
clients work too. Leaves are good for client and server use (the router is both). EC P-256 keys:
fast handshakes, small certificates. Private keys are written 0600 in a 0700 directory.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from prfaas.security import identities
from prfaas.security.secret_files import private_dir, write_private

DEFAULT_DAYS = 30
CA_NAME = "ca"


@dataclass(frozen=True)
class Authority:
    """A CA in memory: its key and self-signed certificate."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class CertFiles:
    """Where one process's TLS material lies (what `--tls-cert/--tls-key/--tls-ca` take)."""

    cert: Path
    key: Path
    ca: Path


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def new_authority(
    common_name: str = "prfaas development CA", days: int = DEFAULT_DAYS
) -> Authority:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )  # fmt: skip
        .sign(key, hashes.SHA256())
    )
    return Authority(key, cert)


def _san(identity: str, hosts: tuple[str, ...]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = [
        x509.UniformResourceIdentifier(identity),
        x509.DNSName(identities.server_name(identity)),
        x509.DNSName("localhost"),
    ]
    for host in dict.fromkeys(("127.0.0.1", *hosts)):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            if host:
                names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def issue(
    ca: Authority,
    identity: str,
    hosts: tuple[str, ...] = (),
    *,
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
) -> tuple[bytes, bytes]:
    """(certificate PEM, private key PEM) for `identity`, signed by `ca`.
    `not_before`/`not_after` default to now-5 min .. the CA's expiry (tests pass past dates)."""
    key = ec.generate_private_key(ec.SECP256R1())
    start = not_before or _now() - datetime.timedelta(minutes=5)
    end = not_after or ca.cert.not_valid_after_utc
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, identity)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_san(identity, hosts), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )  # fmt: skip
        .sign(ca.key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def write_identity(
    ca: Authority,
    identity: str,
    out: Path,
    hosts: tuple[str, ...] = (),
    *,
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
) -> CertFiles:
    """Issue a certificate for `identity` into `out` (`<stem>.crt`, `<stem>.key` 0600); the
    validity bounds as `issue` takes them."""
    out = private_dir(out)
    cert, key = issue(ca, identity, hosts, not_before=not_before, not_after=not_after)
    stem = identities.file_stem(identity)
    (out / f"{stem}.crt").write_bytes(cert)
    write_private(out / f"{stem}.key", key)
    ca_path = out / f"{CA_NAME}.crt"
    if not ca_path.exists():
        ca_path.write_bytes(ca.pem)
    return CertFiles(out / f"{stem}.crt", out / f"{stem}.key", ca_path)


def write_authority(ca: Authority, out: Path) -> CertFiles:
    """Store the CA itself (its key 0600), so more certificates can be issued later."""
    out = private_dir(out)
    (out / f"{CA_NAME}.crt").write_bytes(ca.pem)
    write_private(out / f"{CA_NAME}.key", _key_pem(ca.key))
    return CertFiles(out / f"{CA_NAME}.crt", out / f"{CA_NAME}.key", out / f"{CA_NAME}.crt")
