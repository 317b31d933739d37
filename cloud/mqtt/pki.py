"""A small private CA for the broker's TLS listener: one CA, server certificates signed by it.

Keys are ECDSA P-256 (what Mosquitto, OpenSSL and Python's ``ssl`` all accept, at a fraction of
RSA's handshake cost on a Raspberry Pi). Devices trust the CA certificate (``tls_ca_file``); the
broker presents a server certificate naming every DNS name and IP address devices connect to.
Private keys are written readable by their owner only (0600).
"""

from __future__ import annotations

import ipaddress
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cloud.errors import ConfigurationError

CA_CERT = "ca.pem"
CA_KEY = "ca.key"
SERVER_CERT = "server.pem"
SERVER_KEY = "server.key"
# Certificates start this long before now, so a device whose clock is a little behind accepts them.
CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class CaFiles:
    """Where a CA's certificate and private key are."""

    cert: Path
    key: Path


@dataclass(frozen=True, slots=True)
class ServerFiles:
    """Where a server certificate, its private key and the CA certificate that signed it are."""

    cert: Path
    key: Path
    ca_cert: Path


def make_ca(directory: Path, common_name: str, days: int) -> CaFiles:
    """Create a CA in ``directory`` (``ca.pem``, ``ca.key``); refuse to replace an existing one."""
    cert_path, key_path = directory / CA_CERT, directory / CA_KEY
    for path in (cert_path, key_path):
        if path.exists():
            raise FileExistsError(
                f"{path} exists: a new CA would invalidate every device's trust; remove it deliberately first"
            )
    _check_days(days)
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + timedelta(days=days))
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private_key(key_path, key)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return CaFiles(cert_path, key_path)


def make_server_cert(
    ca_dir: Path, directory: Path, hostnames_and_ips: Iterable[str], days: int
) -> ServerFiles:
    """Issue ``server.pem`` and ``server.key`` in ``directory``, signed by the CA in ``ca_dir``.

    Each entry of ``hostnames_and_ips`` becomes a subjectAltName: an IP address if it parses as
    one, else a DNS name. Existing server files are replaced (renewal); the CA is not touched.
    """
    names = list(dict.fromkeys(hostnames_and_ips))
    if not names:
        raise ConfigurationError("a server certificate needs at least one host name or IP address")
    _check_days(days)
    alt_names = [_alt_name(name) for name in names]
    ca_cert = x509.load_pem_x509_certificate((ca_dir / CA_CERT).read_bytes())
    ca_key = serialization.load_pem_private_key((ca_dir / CA_KEY).read_bytes(), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ConfigurationError(f"{ca_dir / CA_KEY} is not an EC key made by make_ca")
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(min(now + timedelta(days=days), ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = directory / SERVER_CERT, directory / SERVER_KEY
    _write_private_key(key_path, key)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return ServerFiles(cert_path, key_path, ca_dir / CA_CERT)


def _alt_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        pass
    if not name or not name.isascii() or any(c.isspace() or c in "/:@" for c in name):
        raise ConfigurationError(f"{name!r} is neither an IP address nor a DNS name")
    return x509.DNSName(name.lower())


def _check_days(days: int) -> None:
    if days < 1:
        raise ConfigurationError(f"a certificate must be valid for at least one day, not {days}")


def _write_private_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _write(path, pem, 0o600)


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` atomically with ``mode``; never readable by others on the way."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # created 0600
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
