"""Run one PowerShell script on a sensor through pywinrm, within a wall-clock deadline.

Every way a remote run can fail ends as a `RemoteFailure` with a kind an operator can act on; messages
never carry the password (pywinrm and requests do not put it in theirs, and we add nothing from it).
"""

from __future__ import annotations

import base64
import logging
import math
import re
import time
from dataclasses import dataclass
from enum import StrEnum
from html import unescape

import requests
from pydantic import SecretStr
from winrm.exceptions import (
    InvalidCredentialsError,
    WinRMError,
    WinRMOperationTimeoutError,
    WinRMTransportError,
    WSManFaultError,
)
from winrm.protocol import Protocol

from bot.sensor_targets import SensorTarget

log = logging.getLogger(__name__)

ACCESS_DENIED_CODE = 5  # WSManFault code for "Access is denied."
UTF8_CODEPAGE = 65001  # the shell's console code page (pywinrm defaults to 437)


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


@dataclass(frozen=True)
class ScriptOutput:
    stdout: str
    stderr: str
    exit_code: int


def clixml_text(stderr: bytes) -> str:
    """The readable text of PowerShell's CLIXML error stream (or the raw text if it is not CLIXML)."""
    text = stderr.decode("utf-8", errors="replace")
    if not text.startswith("#< CLIXML"):
        return text.strip()
    parts = re.findall(r'<S S="Error">(.*?)</S>', text, flags=re.DOTALL)
    joined = "".join(unescape(p) for p in parts).replace("_x000D__x000A_", "\n")
    return joined.strip()


def _timeouts(target: SensorTarget, remaining: float) -> tuple[int, int]:
    """(operation, read) timeouts in whole seconds, never far beyond the deadline; pywinrm needs read > op."""
    read = max(2, min(target.operation_timeout + 10, math.ceil(remaining)))
    return max(1, min(target.operation_timeout, read - 1)), read


def _protocol(target: SensorTarget, password: SecretStr | None, remaining: float) -> Protocol:
    operation, read = _timeouts(target, remaining)
    return Protocol(
        target.endpoint,
        transport=target.transport,
        username=target.username,
        password=password.get_secret_value() if password else None,
        # None means the default trust store (pywinrm handles it; its annotation omits it).
        ca_trust_path=str(target.ca_file) if target.ca_file else None,  # type: ignore[arg-type]
        cert_pem=str(target.cert_pem) if target.cert_pem else None,
        cert_key_pem=str(target.cert_key_pem) if target.cert_key_pem else None,
        server_cert_validation="validate" if target.cert_validation else "ignore",
        read_timeout_sec=read,
        operation_timeout_sec=operation,
        # Sensors are reached directly, never through the environment's proxy. Not `proxy=None`: pywinrm
        # then puts `no_proxy` in the session's proxies, and requests rewrites `os.environ["no_proxy"]`
        # around every request (psf/requests#4997), which concurrent checks race on (a KeyError in any
        # thread reading the environment, or a `no_proxy=*` left behind for Slack's client). An empty
        # proxy URL is no proxy to requests, and leaves the environment alone.
        proxy="",
    )


def _classify(exc: BaseException) -> RemoteFailure:
    if isinstance(exc, RemoteFailure):
        return exc
    if isinstance(exc, requests.exceptions.SSLError):
        return RemoteFailure(FailureKind.TLS, "TLS handshake or certificate verification failed")
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return RemoteFailure(FailureKind.UNREACHABLE, "connection timed out")
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return RemoteFailure(FailureKind.TIMEOUT, "no answer within the read timeout")
    if isinstance(exc, requests.exceptions.ConnectionError):
        reason = "connection refused" if "refused" in str(exc).lower() else "connection failed"
        return RemoteFailure(FailureKind.UNREACHABLE, reason)
    if isinstance(exc, InvalidCredentialsError | PermissionError):
        return RemoteFailure(FailureKind.ACCESS_DENIED, "credentials rejected (HTTP 401)")
    if isinstance(exc, WSManFaultError):
        if exc.wsman_fault_code == ACCESS_DENIED_CODE:
            return RemoteFailure(FailureKind.ACCESS_DENIED, f"access denied: {exc.reason}")
        return RemoteFailure(FailureKind.WINRM_FAULT, f"WS-Management fault (HTTP {exc.code}): {exc.reason}")
    if isinstance(exc, WinRMTransportError):
        return RemoteFailure(FailureKind.WINRM_FAULT, f"HTTP {exc.code} from the WinRM service")
    if isinstance(exc, WinRMError):
        return RemoteFailure(FailureKind.WINRM_FAULT, str(exc))
    if isinstance(exc, requests.exceptions.RequestException):
        return RemoteFailure(FailureKind.WINRM_FAULT, type(exc).__name__)
    # Not a failure pywinrm or requests document: keep the traceback for whoever investigates.
    log.warning("WinRM run failed with an unexpected error", exc_info=exc)
    return RemoteFailure(FailureKind.WINRM_FAULT, f"unexpected {type(exc).__name__}")


def run_powershell(
    target: SensorTarget, password: SecretStr | None, script: str, *, deadline: float
) -> ScriptOutput:
    """Run `script` like pywinrm's `Session.run_ps`, giving up at `deadline` (a `time.monotonic()` value)."""

    def remaining() -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise RemoteFailure(FailureKind.TIMEOUT, "the sensor did not finish within the host timeout")
        return left

    encoded = base64.b64encode(script.encode("utf-16-le")).decode("ascii")
    try:
        protocol = _protocol(target, password, remaining())

        def budget() -> None:
            # Each request may wait at most until the deadline (pywinrm reads this per request).
            protocol.transport.read_timeout_sec = max(
                1, min(protocol.read_timeout_sec, math.ceil(remaining()))
            )

        budget()
        shell_id = protocol.open_shell(codepage=UTF8_CODEPAGE)
        try:
            budget()
            command_id = protocol.run_command(shell_id, f"powershell -encodedcommand {encoded}")
            stdout, stderr, code, done = [], [], -1, False
            while not done:
                budget()
                try:
                    out, err, code, done = protocol.get_command_output_raw(shell_id, command_id)
                except WinRMOperationTimeoutError:
                    continue
                stdout.append(out)
                stderr.append(err)
            budget()
            protocol.cleanup_command(shell_id, command_id)
            budget()
            protocol.close_shell(shell_id)
        finally:
            protocol.transport.close_session()
    except Exception as exc:  # noqa: BLE001 - every failure becomes a typed RemoteFailure
        raise _classify(exc) from None
    return ScriptOutput(
        stdout=b"".join(stdout).decode("utf-8", errors="replace"),
        stderr=clixml_text(b"".join(stderr)),
        exit_code=code,
    )
