"""The credential the app signs in with: its client secret, or its certificate (MSAL's certificate
credential: a client assertion, a JWT signed with the private key, whose `x5t#S256` header names the
certificate registered for the app; the key itself never leaves the process)."""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pydantic import SecretStr

from bot.config import ConfigError, GraphConfig


@dataclass(frozen=True)
class ClientCredential:
    """What MSAL's `client_credential` takes, the secret in it (to keep out of every message), and what
    a refused sign-in should make the operator check."""

    msal_value: str | dict[str, str]
    secret: SecretStr
    what_to_check: str


def client_credential(config: GraphConfig) -> ClientCredential:
    if not config.uses_certificate:
        secret = config.client_secret()
        return ClientCredential(secret.get_secret_value(), secret, "the client secret")
    certificate, key = config.client_certificate()
    _check_pair(config, certificate, key)
    return ClientCredential(
        # public_certificate: MSAL computes the SHA-256 thumbprint (x5t#S256) and sends the chain (x5c), so
        # Subject Name/Issuer authentication works too.
        {"private_key": key.get_secret_value(), "public_certificate": certificate},
        key,
        "the certificate registered for the app (client_certificate_file)",
    )


def _check_pair(config: GraphConfig, certificate: str, key: SecretStr) -> None:
    """A PEM certificate and its matching, unencrypted PEM private key; the error names the files only."""
    files = f"{config.client_certificate_file} and {config.client_certificate_key_file}"
    problem = [
        f"graph.client_certificate_file: {files} are not a PEM certificate and its matching, unencrypted "
        "private key"
    ]
    try:
        public = x509.load_pem_x509_certificate(certificate.encode("ascii")).public_key()
        private = serialization.load_pem_private_key(key.get_secret_value().encode("utf-8"), password=None)
    except (ValueError, TypeError, UnicodeError):
        raise ConfigError(problem) from None
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if private.public_key().public_bytes(*spki) != public.public_bytes(*spki):
        raise ConfigError(problem)
