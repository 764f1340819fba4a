"""How a remote run on a sensor failed: a kind an operator can act on, and a readable detail."""

from __future__ import annotations

from enum import StrEnum


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
