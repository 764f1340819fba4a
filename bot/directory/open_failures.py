"""Why a connection to a domain controller could not be opened, in plain words with the fix: a name DNS
cannot resolve, a certificate not trusted, a step that did not finish within `connect_timeout`. The
library's own message goes to the debug log (`-v`), with the certificate the DC presented."""

from __future__ import annotations

import logging
import socket
import ssl
from dataclasses import dataclass

from cryptography import x509

from bot.config import AccountConfig, DomainController

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlainFailure:
    tls: bool  # the TLS layer failed (the DC was reached)
    text: str


def explain(dc: DomainController, account: AccountConfig, library: str, step: str) -> PlainFailure | None:
    """The failure in plain words, or None when the library's message is all there is to say."""
    lowered = library.lower()
    if "invalid server address" in lowered and (unresolved := _unresolvable(dc.host)):
        return PlainFailure(False, unresolved)
    if "certificate verify failed" in lowered:
        if dc.use_ssl and log.isEnabledFor(logging.DEBUG):
            _log_presented_certificate(dc, account.connect_timeout)
        return PlainFailure(True, _untrusted(dc, account, library))
    if "timed out" in lowered:
        return PlainFailure(
            False, f"{dc.host} did not complete {step} within connect_timeout ({account.connect_timeout:g} s)"
        )
    return None


def _unresolvable(host: str) -> str | None:
    try:
        socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        log.debug("resolving %s: %s", host, exc)
        return (
            f"cannot resolve {host} in DNS: check its name in domain_controllers and this host's DNS servers"
        )
    return None


def _untrusted(dc: DomainController, account: AccountConfig, library: str) -> str:
    reason = library.lower().split("certificate verify failed:", 1)[-1].split("(_ssl", 1)[0].strip(" ,")
    if "mismatch" in reason:
        return (
            f"{dc.host}'s certificate is not issued for the name {dc.host} ({reason}): name the DC in "
            "domain_controllers as its certificate does"
        )
    trusted = f"the CA in ca_file {account.ca_file}" if account.ca_file else "this host's trusted CAs"
    return (
        f"{dc.host}'s certificate is not trusted by {trusted} ({reason}): set ca_file to the CA that issued "
        "the DC's certificate"
    )


def _log_presented_certificate(dc: DomainController, timeout: float) -> None:
    """The certificate the DC presents (read again without verification, for the operator's eyes only;
    Python gives the leaf, whose issuer names the CA to trust)."""
    try:
        pem = ssl.get_server_certificate((dc.host, dc.port), timeout=timeout)
        cert = x509.load_pem_x509_certificate(pem.encode("ascii"))
    except (OSError, ValueError) as exc:
        log.debug("%s: its certificate could not be read: %s", dc.url, exc)
        return
    log.debug(
        "%s presents a certificate for %s issued by %s, valid %s to %s",
        dc.url,
        cert.subject.rfc4514_string(),
        cert.issuer.rfc4514_string(),
        f"{cert.not_valid_before_utc:%Y-%m-%d}",
        f"{cert.not_valid_after_utc:%Y-%m-%d}",
    )
