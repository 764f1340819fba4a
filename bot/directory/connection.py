"""One LDAP session to one domain controller: TLS always (LDAPS or StartTLS), then a simple bind whose
failure to answer is told apart from a verdict."""

from __future__ import annotations

import logging
import math
import socket
import ssl
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path

from ldap3 import SIMPLE, Connection, Server, Tls
from ldap3.core.exceptions import (
    LDAPCertificateError,
    LDAPException,
    LDAPSocketOpenError,
    LDAPSSLConfigurationError,
    LDAPStartTLSError,
)
from pydantic import SecretStr

from bot.config import AccountConfig, ConfigError, DomainController
from bot.directory.open_failures import explain

log = logging.getLogger(__name__)


class AttemptOutcome(StrEnum):
    OK = "ok"
    REJECTED = "rejected"
    UNREACHABLE = "unreachable"
    TLS_ERROR = "tls_error"
    NO_ANSWER = "no_answer"


class NoVerdict(Exception):
    """This DC gave no verdict; `outcome` says whether failing over is safe."""

    def __init__(self, outcome: AttemptOutcome, detail: str) -> None:
        super().__init__(detail)
        self.outcome = outcome
        self.detail = detail


def tls_for(account: AccountConfig) -> Tls:
    if not account.tls_verify:
        return Tls(validate=ssl.CERT_NONE, version=ssl.PROTOCOL_TLS_CLIENT)
    if account.ca_file is not None:
        _check_ca_file(account.id, account.ca_file)
    return Tls(
        validate=ssl.CERT_REQUIRED,
        version=ssl.PROTOCOL_TLS_CLIENT,
        ca_certs_file=str(account.ca_file) if account.ca_file else None,
    )


def _check_ca_file(account_id: str, ca_file: Path) -> None:
    """A missing or unusable `ca_file` is a configuration problem, told before anything is sent (ldap3
    would raise its own error from deep inside, or call it a TLS failure of every DC)."""
    try:
        ssl.create_default_context(cafile=str(ca_file))
    except ssl.SSLError as exc:
        problem = exc.reason or str(exc)
        raise ConfigError(
            [f"account {account_id}: ca_file {ca_file} holds no usable CA certificate ({problem})"]
        ) from None
    except OSError as exc:
        problem = exc.strerror or str(exc)
        raise ConfigError([f"account {account_id}: ca_file {ca_file} cannot be read ({problem})"]) from None


def is_tls_problem(exc: BaseException) -> bool:
    if "timed out" in str(exc):
        return False
    if isinstance(exc, ssl.SSLError | LDAPCertificateError | LDAPSSLConfigurationError | LDAPStartTLSError):
        return True
    text = str(exc).lower()
    return "ssl" in text or "certificate" in text or "tls" in text


def describe_error(exc: BaseException) -> str:
    text = str(exc)
    while text.startswith("(") and text.endswith(",)"):  # ldap3 nests messages in tuple reprs
        text = text[1:-2].strip("'\"")
    return text or type(exc).__name__


def open_failure(dc: DomainController, account: AccountConfig, exc: LDAPException, step: str) -> NoVerdict:
    """Why opening failed, in plain words; the library's message in the debug log (`-v`)."""
    library = describe_error(exc)
    log.debug("%s: %s failed: %s", dc.url, step, library)
    plain = explain(dc, account, library, step)
    if plain is not None:
        return NoVerdict(AttemptOutcome.TLS_ERROR if plain.tls else AttemptOutcome.UNREACHABLE, plain.text)
    return NoVerdict(AttemptOutcome.TLS_ERROR if is_tls_problem(exc) else AttemptOutcome.UNREACHABLE, library)


def _opening_seconds(account: AccountConfig) -> int:
    """ldap3 waits for the TLS handshake (and the StartTLS answer) with the connection's receive timeout,
    in whole seconds: while opening, that is `connect_timeout` (rounded up), not `receive_timeout`."""
    return max(1, math.ceil(account.connect_timeout))


def _await_answers(conn: Connection, seconds: int) -> None:
    """Once the connection is open, answers are awaited for `receive_timeout`."""
    conn.receive_timeout = seconds
    if conn.socket is not None:
        conn.socket.settimeout(seconds)
        conn.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("LL", seconds, 0))


def _open_tls(conn: Connection, dc: DomainController, account: AccountConfig) -> None:
    """Open the connection and its TLS (LDAPS, or StartTLS), each step within `connect_timeout`."""
    try:
        conn.open()
    except LDAPException as exc:
        step = "the TLS handshake" if "ssl wrapping" in str(exc) else "the connection"
        raise open_failure(dc, account, exc, step) from None
    if not dc.use_ssl:
        try:
            started = conn.start_tls()
        except LDAPException as exc:
            raise open_failure(dc, account, exc, "StartTLS") from None
        if not started:
            raise NoVerdict(AttemptOutcome.TLS_ERROR, f"StartTLS refused: {conn.result}")
    _await_answers(conn, account.receive_timeout)


@contextmanager
def open_session(
    dc: DomainController, account: AccountConfig, user: str, password: SecretStr
) -> Iterator[Connection]:
    """An open, TLS-protected connection to one DC, not yet bound. Raises NoVerdict."""
    server = Server(
        dc.host,
        port=dc.port,
        use_ssl=dc.use_ssl,
        tls=tls_for(account),
        get_info="NO_INFO",
        connect_timeout=account.connect_timeout,
    )
    conn = Connection(
        server,
        user=user,
        password=password.get_secret_value(),
        authentication=SIMPLE,
        receive_timeout=_opening_seconds(account),
        check_names=False,
        raise_exceptions=False,
        read_only=True,
    )
    try:
        _open_tls(conn, dc, account)
        yield conn
    finally:
        try:
            conn.unbind()
        except LDAPException:
            log.debug("unbind from %s failed", dc.url)


def send_bind(conn: Connection) -> tuple[bool, int, str]:
    """Send the bind. An exception here means the password left: the verdict is unknown."""
    try:
        bound = bool(conn.bind())
    except LDAPSocketOpenError as exc:
        raise NoVerdict(AttemptOutcome.UNREACHABLE, describe_error(exc)) from None
    except LDAPException as exc:
        raise NoVerdict(AttemptOutcome.NO_ANSWER, describe_error(exc)) from None
    result = conn.result or {}
    if not bound and result.get("description") in (None, "", "Timeout"):
        raise NoVerdict(AttemptOutcome.NO_ANSWER, str(conn.last_error or "no answer to the bind"))
    return bound, int(result.get("result", -1)), str(result.get("message", ""))
