"""Run one PowerShell script on a sensor through pywinrm, within a wall-clock deadline.

Every way a remote run can fail ends as a `RemoteFailure` with a kind an operator can act on; messages
never carry the password (pywinrm and requests do not put it in theirs, and we add nothing from it).

Round trips of one run (docs/sensors.md): NTLM's two legs (its Negotiate token goes with the first request),
Create, Command, one Receive per envelope of output, then the shell's Delete, sent after the output is in
hand and not awaited by the result. No Signal: deleting a shell ends its command.
"""

from __future__ import annotations

import base64
import logging
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from html import unescape
from pathlib import Path
from urllib.parse import urlsplit

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

from bot.sensors.failures import FailureKind, RemoteFailure, tls_failure, unresolved
from bot.sensors.http_guard import guard, watched
from bot.sensors.ntlm_auth import EagerNtlmAuth
from bot.sensors.targets import SensorTarget

log = logging.getLogger(__name__)

ACCESS_DENIED_CODE = 5  # WSManFault code for "Access is denied."
CHECK_CREDENTIAL = "check [winrm] username and its password, and that the user may use WinRM on the host"
UTF8_CODEPAGE = 65001  # the shell's console code page (pywinrm defaults to 437)
# What one run may send back, stdout and stderr together: the check prints one small JSON object, so
# anything near this is a sensor gone wrong, and it must not be able to fill the bot's memory.
MAX_OUTPUT_BYTES = 1 << 20
# Closing the remote shell happens after every run, also a timed-out one, so it gets its own budget.
CLOSE_TIMEOUT_SECONDS = 5
# A shell whose Delete never arrives (the process killed) expires after the operation timeout (the longest
# wait between two requests of a run) plus this long without a request, so it cannot hold one of
# MaxShellsPerUser for WinRM's default 2 hours (Windows allows no IdleTimeout under a minute).
SHELL_IDLE_MARGIN_SECONDS = 60
# PowerShell's error stream: how much of it is scanned, and how much readable text is kept.
CLIXML_SCAN_BYTES = 64 * 1024
MAX_ERROR_TEXT = 4000
CLIXML_MARK = "#< CLIXML"
ERROR_OPEN, ERROR_CLOSE = '<S S="Error">', "</S>"
_CLIXML_CHAR = re.compile(r"_x([0-9A-Fa-f]{4})_")  # a character PowerShell could not put in XML as is


@dataclass(frozen=True)
class ScriptOutput:
    stdout: str
    stderr: str
    exit_code: int


def clixml_text(stderr: bytes) -> str:
    """The readable text of PowerShell's CLIXML error stream (or the raw text if it is not CLIXML).

    A bounded scan: only the first CLIXML_SCAN_BYTES are looked at, each error record is found once with
    `str.find` (no backtracking over a hostile stream), and at most MAX_ERROR_TEXT characters are kept.
    """
    text = stderr[:CLIXML_SCAN_BYTES].decode("utf-8", errors="replace")
    if not text.startswith(CLIXML_MARK):
        return text.strip()[:MAX_ERROR_TEXT]
    records: list[str] = []
    kept, position = 0, 0
    while kept < MAX_ERROR_TEXT:
        start = text.find(ERROR_OPEN, position)
        end = text.find(ERROR_CLOSE, start + len(ERROR_OPEN)) if start >= 0 else -1
        if end < 0:
            break
        records.append(text[start + len(ERROR_OPEN) : end])
        kept += end - start
        position = end + len(ERROR_CLOSE)
    readable = _CLIXML_CHAR.sub(lambda found: chr(int(found.group(1), 16)), unescape("".join(records)))
    return readable.strip()[:MAX_ERROR_TEXT]


def _timeouts(target: SensorTarget, remaining: float) -> tuple[int, int]:
    """(operation, read) timeouts in whole seconds, never far beyond the deadline; pywinrm needs read > op."""
    read = max(2, min(target.operation_timeout + 10, math.ceil(remaining)))
    return max(1, min(target.operation_timeout, read - 1)), read


def _seals_with_ntlm(target: SensorTarget) -> bool:
    """NTLM over http:// seals every message (pywinrm's message_encryption "auto"; WinRM requires it)."""
    return target.transport == "ntlm" and not target.endpoint.lower().startswith("https://")


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
        # Sealing is set up by `_open_session` after our own NTLM handshake, one round trip shorter than
        # the one pywinrm would start as it builds the session; every message is sealed all the same.
        message_encryption="never" if _seals_with_ntlm(target) else "auto",
    )


def _open_session(protocol: Protocol, *, seal: bool) -> None:
    """The run's one authenticated session: pywinrm keeps it, and its NTLM context, for every request."""
    transport = protocol.transport
    if transport.session is not None:
        return
    session = transport.build_session()
    # No proxy is used (`proxy=""` above), yet requests would read the whole environment on every
    # request to find one (resolve_proxies): a sixth of a check's CPU, measured with py-spy.
    session.trust_env = False
    guard(session)
    if seal:
        session.auth = EagerNtlmAuth(transport.username or "", transport.password or "")
        transport.setup_encryption(session)  # an empty request: the handshake, then sealing on


def _classify(exc: BaseException, endpoint: str, ca_file: Path | None = None) -> RemoteFailure:
    if isinstance(exc, RemoteFailure):
        return exc
    host = urlsplit(endpoint).hostname or endpoint
    if isinstance(exc, requests.exceptions.SSLError):
        return tls_failure(exc, host, ca_file)
    if isinstance(exc, requests.exceptions.ConnectionError) and (dns := unresolved(exc, host)):
        return dns
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return RemoteFailure(FailureKind.UNREACHABLE, "connection timed out")
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return RemoteFailure(FailureKind.TIMEOUT, "no answer within the read timeout")
    if isinstance(exc, requests.exceptions.ConnectionError):
        reason = "connection refused" if "refused" in str(exc).lower() else "connection failed"
        return RemoteFailure(FailureKind.UNREACHABLE, reason)
    if isinstance(exc, InvalidCredentialsError | PermissionError):
        return RemoteFailure(
            FailureKind.ACCESS_DENIED, f"credentials rejected (HTTP 401); {CHECK_CREDENTIAL}"
        )
    if isinstance(exc, WSManFaultError):
        if exc.wsman_fault_code == ACCESS_DENIED_CODE:
            return RemoteFailure(
                FailureKind.ACCESS_DENIED, f"access denied: {exc.reason}; {CHECK_CREDENTIAL}"
            )
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


TIMED_OUT = "the sensor did not finish within the host timeout"


def run_powershell(
    target: SensorTarget, password: SecretStr | None, script: str, *, deadline: float
) -> ScriptOutput:
    """Run `script` like pywinrm's `Session.run_ps`, ending by `deadline` (a `time.monotonic()` value)
    whatever the sensor does: its connections are shut down then (`http_guard.watched`). The shell's
    Delete goes after the result, in the background."""

    def remaining() -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise RemoteFailure(FailureKind.TIMEOUT, TIMED_OUT)
        return left

    encoded = base64.b64encode(script.encode("utf-16-le")).decode("ascii")
    seal = _seals_with_ntlm(target)
    protocol, shell_id, failure = None, None, None
    with watched(deadline) as watch:
        try:
            protocol = _protocol(target, password, remaining())
            shell_id = _open_shell(protocol, remaining, seal=seal)
            output = _run(protocol, shell_id, f"powershell -encodedcommand {encoded}", remaining)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a typed RemoteFailure
            failure = (
                RemoteFailure(FailureKind.TIMEOUT, TIMED_OUT)
                if watch.expired
                else _classify(exc, target.endpoint, target.ca_file)
            )
    if failure is not None and protocol is not None:
        # A request cut short leaves its connection, and with it NTLM's message sealing, out of step with
        # the sensor: the shell is closed over a new session, authenticated afresh.
        protocol.transport.close_session()
    if protocol is not None and shell_id is not None:
        _close_in_background(protocol, shell_id, seal=seal)
    if failure is not None:
        raise failure
    return output


def _budget(protocol: Protocol, remaining: Callable[[], float]) -> None:
    """Each request may wait at most until the deadline (pywinrm reads this per request)."""
    protocol.transport.read_timeout_sec = max(1, min(protocol.read_timeout_sec, math.ceil(remaining())))


def _open_shell(protocol: Protocol, remaining: Callable[[], float], *, seal: bool) -> str:
    _budget(protocol, remaining)
    _open_session(protocol, seal=seal)
    idle = protocol.operation_timeout_sec + SHELL_IDLE_MARGIN_SECONDS
    shell_id: str = protocol.open_shell(codepage=UTF8_CODEPAGE, idle_timeout=f"PT{idle}S")
    return shell_id


def _run(protocol: Protocol, shell_id: str, command: str, remaining: Callable[[], float]) -> ScriptOutput:
    _budget(protocol, remaining)
    command_id = protocol.run_command(shell_id, command)
    return _receive(protocol, shell_id, command_id, lambda: _budget(protocol, remaining))


def _receive(protocol: Protocol, shell_id: str, command_id: str, budget: Callable[[], None]) -> ScriptOutput:
    """The command's output until it is done, refusing more than MAX_OUTPUT_BYTES."""
    stdout, stderr = bytearray(), bytearray()
    code, done = -1, False
    while not done:
        budget()
        try:
            out, err, code, done = protocol.get_command_output_raw(shell_id, command_id)
        except WinRMOperationTimeoutError:
            continue
        stdout += out
        stderr += err
        if len(stdout) + len(stderr) > MAX_OUTPUT_BYTES:
            raise RemoteFailure(
                FailureKind.SCRIPT_ERROR,
                f"the sensor sent more than {MAX_OUTPUT_BYTES // 1024} KiB of output; the check was stopped",
            )
    return ScriptOutput(
        stdout=stdout.decode("utf-8", errors="replace"), stderr=clixml_text(bytes(stderr)), exit_code=code
    )


def _close_shell(protocol: Protocol, shell_id: str, *, seal: bool) -> None:
    """Best effort after every run, whatever ended it: a shell left open keeps its PowerShell running,
    and shells piling up reach WinRM's MaxShellsPerUser, after which the sensor refuses every check.
    Over the run's session if it is still open (else a new one); pywinrm closes the session after."""
    protocol.transport.read_timeout_sec = CLOSE_TIMEOUT_SECONDS
    try:
        _open_session(protocol, seal=seal)
        protocol.close_shell(shell_id)
    except Exception as exc:  # noqa: BLE001 - the run's own outcome matters more than the cleanup's
        log.info("could not close remote shell %s: %s", shell_id, _classify(exc, protocol.transport.endpoint))


_closing: set[threading.Thread] = set()
_closing_lock = threading.Lock()


def _close_in_background(protocol: Protocol, shell_id: str, *, seal: bool) -> None:
    """The Delete of a shell, off the run's path (which ends by its deadline). A short-lived thread of
    its own (CLOSE_TIMEOUT_SECONDS at most, whatever the sensor does), not a daemon: the interpreter
    waits for it at exit, so a one-shot `atp-bot check` leaves no shell behind."""

    def close() -> None:
        try:
            with watched(time.monotonic() + CLOSE_TIMEOUT_SECONDS):
                _close_shell(protocol, shell_id, seal=seal)
        finally:
            with _closing_lock:
                _closing.discard(threading.current_thread())

    closer = threading.Thread(target=close, name=f"winrm-close-{shell_id[:8]}")
    with _closing_lock:
        _closing.add(closer)
    closer.start()


def wait_for_shell_closes() -> None:
    """Until every shell Delete sent after a run has been answered (or given up): for tests and benches
    that count shells or round trips; the product never needs to wait for them."""
    with _closing_lock:
        pending = list(_closing)
    for closer in pending:
        closer.join()


__all__ = [
    "FailureKind",
    "RemoteFailure",
    "ScriptOutput",
    "clixml_text",
    "run_powershell",
    "wait_for_shell_closes",
]
