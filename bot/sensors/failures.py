"""How a remote run on a sensor failed: a kind an operator can act on, and a readable detail."""

from __future__ import annotations

import logging
from enum import StrEnum
from pathlib import Path

from urllib3.exceptions import NameResolutionError

log = logging.getLogger(__name__)


class FailureKind(StrEnum):
    UNREACHABLE = "unreachable"
    TIMEOUT = "timeout"
    ACCESS_DENIED = "access_denied"
    TLS = "tls_error"
    WINRM_FAULT = "winrm_fault"
    SCRIPT_ERROR = "script_error"
    CONFIG = "config_error"


class RemoteFailure(Exception):
    def __init__(self, kind: FailureKind, detail: str) -> None:
        self.kind = kind
        self.detail = detail
        super().__init__(f"{kind}: {detail}")


def _cause(exc: BaseException) -> BaseException | None:
    """What urllib3 failed with under requests' ConnectionError/SSLError (its MaxRetryError's reason)."""
    inner = exc.args[0] if exc.args and isinstance(exc.args[0], BaseException) else None
    return getattr(inner, "reason", inner)


def unresolved(exc: BaseException, host: str) -> RemoteFailure | None:
    """A sensor name DNS cannot resolve, in plain words; None for any other connection failure."""
    if not isinstance(_cause(exc), NameResolutionError):
        return None
    log.debug("resolving %s: %s", host, exc)
    return RemoteFailure(
        FailureKind.UNREACHABLE,
        f"cannot resolve {host} in DNS: check the sensor's endpoint and this host's DNS",
    )


def tls_failure(exc: BaseException, host: str, ca_file: Path | None) -> RemoteFailure:
    """A failed TLS handshake in plain words with the fix; the library's message in the debug log (-v)."""
    library = str(exc)
    log.debug("TLS with %s failed: %s", host, library)
    lowered = library.lower()
    if "certificate verify failed" not in lowered:
        return RemoteFailure(FailureKind.TLS, f"the TLS handshake with {host} failed")
    reason = lowered.split("certificate verify failed:", 1)[1].split("(_ssl", 1)[0].strip(" ,")
    if "mismatch" in reason:
        return RemoteFailure(
            FailureKind.TLS,
            f"{host}'s certificate is not issued for the name {host} ({reason}): use the name in its "
            "certificate in the sensor's endpoint",
        )
    trusted = f"the CA in ca_file {ca_file}" if ca_file else "this host's trusted CAs"
    return RemoteFailure(
        FailureKind.TLS,
        f"{host}'s certificate is not trusted by {trusted} ({reason}): set [winrm] ca_file to the CA that "
        "issued the sensor's certificate",
    )
