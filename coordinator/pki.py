"""The coordinator's own small PKI: a CA made at init, the SuperLink's server certificate, and
SuperNode key pairs.

Retailers pin the CA (they confirm its SHA-256 fingerprint with the coordinator by phone or in
person at enrollment), so the coordinator needs no public certificate authority and works on a
LAN address. EC keys throughout: small, fast, and accepted by Python's ssl, uvicorn and httpx.
SuperNode keys are EC P-384 in OpenSSH format because that is what Flower 1.42's SuperNode
authentication loads (``--auth-supernode-private-key``) and registers (``flwr supernode
register``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_VALIDITY = dt.timedelta(days=3650)  # ten years: re-pinning every node is expensive
SERVER_VALIDITY = dt.timedelta(days=730)  # two years: re-issued from the kept CA key
# 127.0.0.1 must stay in every server certificate: Flower's SuperExec reaches the SuperLink's
# runtime API on the loopback address even when the SuperLink listens on all interfaces.
DEFAULT_HOSTS: tuple[str, ...] = ("127.0.0.1", "localhost")
_CLOCK_SKEW = dt.timedelta(minutes=5)  # a node's clock slightly behind still accepts the cert

CA_CERT_FILE = "ca.pem"
CA_KEY_FILE = "ca.key"
SERVER_CERT_FILE = "server.pem"
SERVER_KEY_FILE = "server.key"


@dataclass(frozen=True)
class PkiPaths:
    """Where the PEM files live. ``ca_key`` is kept (0600) so the server certificate can be
    re-issued, for a new hostname or at expiry, without every retailer re-pinning a new CA."""

    ca_cert: Path
    server_cert: Path
    server_key: Path
    ca_key: Path

    def all(self) -> tuple[Path, Path, Path, Path]:
        return (self.ca_cert, self.server_cert, self.server_key, self.ca_key)


def pki_paths(directory: Path) -> PkiPaths:
    """The standard file names inside ``directory`` (nothing is read or written)."""
    return PkiPaths(
        ca_cert=directory / CA_CERT_FILE,
        server_cert=directory / SERVER_CERT_FILE,
        server_key=directory / SERVER_KEY_FILE,
        ca_key=directory / CA_KEY_FILE,
    )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


def create_ca(
    common_name: str = "Retail Intelligence Coordinator CA",
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A self-signed CA that may sign only end-entity certificates (path length 0)."""
    key = _new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = _now()
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA384())
    )
    return key, cert


def _subject_alternative_names(hosts: Sequence[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def issue_server_certificate(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    hosts: Sequence[str] = DEFAULT_HOSTS,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A TLS server certificate for ``hosts`` (IP addresses become IP SANs, names DNS SANs)."""
    if not hosts:
        raise ValueError("a server certificate needs at least one host name or address")
    key = _new_key()
    now = _now()
    public = key.public_key()
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(min(now + SERVER_VALIDITY, ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName(_subject_alternative_names(hosts)), critical=False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
        .sign(ca_key, hashes.SHA384())
    )
    return key, cert


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def write_private_file(path: Path, data: bytes) -> None:
    """Write a secret readable by the owner only (0600), whatever the umask; the file is
    created with that mode so it is never briefly readable by others."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
    finally:
        os.close(fd)


def write_pki(
    directory: Path,
    *,
    hosts: Sequence[str] = DEFAULT_HOSTS,
    common_name: str = "Retail Intelligence Coordinator CA",
    force: bool = False,
) -> PkiPaths:
    """Create the CA and server certificate as PEM files in ``directory``.

    Refuses (FileExistsError) if any of the files exists unless ``force``: replacing the CA
    silently would lock out every enrolled retailer, who pinned the old one.
    """
    paths = pki_paths(directory)
    if not force:
        existing = [p for p in paths.all() if p.exists()]
        if existing:
            raise FileExistsError(
                f"{existing[0]} already exists; a new CA would invalidate every node's pinned "
                "certificate (use force=True to replace it)"
            )
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = create_ca(common_name)
    server_key, server_cert = issue_server_certificate(ca_key, ca_cert, hosts)
    write_private_file(paths.ca_key, _key_pem(ca_key))
    write_private_file(paths.server_key, _key_pem(server_key))
    paths.ca_cert.write_bytes(_cert_pem(ca_cert))
    paths.server_cert.write_bytes(_cert_pem(server_cert))
    return paths


def fingerprint(cert_pem: bytes) -> str:
    """SHA-256 of the certificate (DER) as colon-separated upper-case hex, the form browsers
    and ``openssl x509 -fingerprint -sha256`` show, for a shop owner to compare by eye."""
    der = x509.load_pem_x509_certificate(cert_pem).public_bytes(serialization.Encoding.DER)
    return ":".join(f"{byte:02X}" for byte in hashlib.sha256(der).digest())


def generate_node_keypair(comment: str = "") -> tuple[bytes, str]:
    """A SuperNode authentication key pair: (OpenSSH private key PEM, ``ecdsa-sha2-nistp384
    AAAA...`` public line). ``comment`` is appended to the public line when given."""
    key = _new_key()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    public_line = (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode("ascii")
    )
    if comment:
        public_line = f"{public_line} {comment}"
    return private_pem, public_line
