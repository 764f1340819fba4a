"""Throwaway certificate authorities and certificates for the lab's TLS peers (test use only)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class TlsFiles:
    ca_file: Path
    cert_file: Path
    key_file: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(
    subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey
) -> x509.CertificateBuilder:
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=30))
    )


def _new_ca(common_name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )
    cert = (
        _builder(_name(common_name), _name(common_name), key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _issue(
    directory: Path,
    prefix: str,
    ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate],
    subject: str,
    names: list[x509.GeneralName],
    usage: x509.ObjectIdentifier,
) -> TlsFiles:
    ca_key, ca_cert = ca
    key = ec.generate_private_key(ec.SECP256R1())
    builder = _builder(_name(subject), ca_cert.subject, key)
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = (
        builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(
        directory / f"{prefix}ca.pem", directory / f"{prefix}cert.pem", directory / f"{prefix}key.pem"
    )
    files.ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key_file.touch(mode=0o600)
    files.key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return files


def issue_ca_and_server_cert(directory: Path, hostnames: list[str], ips: list[str]) -> TlsFiles:
    """Write `server-ca.pem`, `server-cert.pem` and `server-key.pem` (0600) into `directory`.

    The server certificate names every host name and IP address given (subjectAltName), is valid from an
    hour ago for 30 days, and is signed by a new CA whose key is discarded.
    """
    names: list[x509.GeneralName] = [x509.DNSName(h) for h in hostnames]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    subject = hostnames[0] if hostnames else ips[0]
    return _issue(
        directory, "server-", _new_ca("atp-bot lab CA"), subject, names, ExtendedKeyUsageOID.SERVER_AUTH
    )


def issue_client_cert(directory: Path, common_name: str) -> TlsFiles:
    """Write `client-ca.pem`, `client-cert.pem` and `client-key.pem` (0600): a client certificate for
    `common_name` (e.g. WinRM certificate authentication) signed by its own new CA."""
    return _issue(
        directory,
        "client-",
        _new_ca("atp-bot lab client CA"),
        common_name,
        [],
        ExtendedKeyUsageOID.CLIENT_AUTH,
    )
