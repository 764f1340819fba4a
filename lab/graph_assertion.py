"""The Microsoft identity platform's certificate credential, for the Graph emulator: the app's registered
certificate, and the checks Entra ID makes of a client assertion (RFC 7523, a JWT signed with the app's
private key) before it issues a token.

Entra's checks, each refused as `invalid_client` with its AADSTS code: the header names a registered
certificate by its thumbprint (`x5t#S256`, SHA-256, or the legacy `x5t`, SHA-1), else AADSTS700027 "the key
was not found"; the signature verifies with that certificate's key (RS256 or PS256), else AADSTS700027;
`aud` is the token endpoint, `iss` and `sub` are the client id, `exp` is in the future.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
KEY_NOT_FOUND = (
    "AADSTS700027: Client assertion contains an invalid signature. [Reason - The key was not found.]"
)
BAD_SIGNATURE = (
    "AADSTS700027: Client assertion contains an invalid signature. [Reason - The provided signature value "
    "did not match the expected signature value.]"
)


@dataclass(frozen=True)
class AppCertificate:
    """A certificate as uploaded to an app registration, and its private key (mode 0600)."""

    cert_file: Path
    key_file: Path

    @property
    def pem(self) -> bytes:
        return self.cert_file.read_bytes()


def issue_app_certificate(directory: Path, name: str = "atp-bot-graph") -> AppCertificate:
    """A self-signed RSA certificate, as `New-SelfSignedCertificate` makes for an app registration."""
    directory.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / f"{name}.pem", directory / f"{name}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem_key = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem_key)
    return AppCertificate(cert_file, key_file)


def _thumbprint(der: bytes, algorithm: str) -> str:
    return base64.urlsafe_b64encode(hashlib.new(algorithm, der).digest()).decode().rstrip("=")


def assertion_refusal(
    assertion: str, registered: bytes | None, client_id: str, token_endpoint: str
) -> str | None:
    """Entra's error description for a client assertion it refuses, None for one it accepts."""
    try:
        header = jwt.get_unverified_header(assertion)
    except jwt.InvalidTokenError:
        return "AADSTS50027: JWT token is invalid or malformed."
    if registered is None:
        return KEY_NOT_FOUND
    certificate = x509.load_pem_x509_certificate(registered)
    der = certificate.public_bytes(serialization.Encoding.DER)
    named = {str(header.get(name, "")).rstrip("=") for name in ("x5t#S256", "x5t")}  # MSAL pads them
    if not named & {_thumbprint(der, "sha256"), _thumbprint(der, "sha1")}:
        return KEY_NOT_FOUND
    if header.get("alg") not in ("RS256", "PS256"):
        return "AADSTS5002738: Invalid JWT token. The signing algorithm is not supported."
    try:
        claims = jwt.decode(
            assertion,
            certificate.public_key(),  # type: ignore[arg-type]
            algorithms=[header["alg"]],
            audience=token_endpoint,
            options={"require": ["aud", "iss", "sub", "exp"]},
        )
    except jwt.InvalidSignatureError:
        return BAD_SIGNATURE
    except jwt.ExpiredSignatureError:
        return "AADSTS700024: Client assertion is not within its valid time range."
    except jwt.InvalidTokenError as exc:
        return f"AADSTS50027: JWT token is invalid or malformed ({type(exc).__name__})."
    if claims["iss"] != client_id or claims["sub"] != client_id:
        return "AADSTS700021: Client assertion application identifier doesn't match 'client_id' parameter."
    return None
