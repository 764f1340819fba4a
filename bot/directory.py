"""The connection test: does Active Directory accept this password for the directory service account?

Like the ATP console's "Test Connection", but careful with the account: a simple bind over LDAPS (or
StartTLS) to the configured domain controllers in order, failing over only when a DC cannot be reached.
A credential that one DC rejected is never tried on another DC, and the lockout guard refuses tests that
could lock the account out.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from ldap3 import BASE, SIMPLE, SUBTREE, Connection, Server, Tls
from ldap3.core.exceptions import (
    LDAPCertificateError,
    LDAPException,
    LDAPSocketOpenError,
    LDAPSSLConfigurationError,
    LDAPStartTLSError,
)
from ldap3.utils.conv import escape_filter_chars
from pydantic import SecretStr

from bot.ad_errors import STALE_PASSWORD_MESSAGE, Reason, decode_bind_failure
from bot.config import AccountConfig, AccountName, DomainController
from bot.kerberos_check import check_current_password
from bot.lockout import AccountLease, LockoutGuard
from bot.redaction import active_secret

log = logging.getLogger(__name__)

FILETIME_NEVER = 0x7FFFFFFFFFFFFFFF
UF_DONT_EXPIRE_PASSWD = 0x10000
UF_LOCKOUT = 0x10
_FILETIME_EPOCH = datetime(1601, 1, 1, tzinfo=UTC)


class Outcome(StrEnum):
    PASSED = "passed"
    REJECTED = "rejected"  # a DC answered and refused the credential
    REFUSED = "refused"  # atp-bot did not send the password (lockout protection, busy)
    UNREACHABLE = "unreachable"  # no DC gave a verdict


class AttemptOutcome(StrEnum):
    OK = "ok"
    REJECTED = "rejected"
    UNREACHABLE = "unreachable"
    TLS_ERROR = "tls_error"
    NO_ANSWER = "no_answer"


@dataclass(frozen=True)
class DcAttempt:
    url: str
    outcome: AttemptOutcome
    detail: str


@dataclass(frozen=True)
class PasswordExpiry:
    """When the tested password expires: `never`, a time, or unknown (both empty)."""

    never: bool = False
    at: datetime | None = None

    def describe(self) -> str:
        if self.never:
            return "never expires"
        if self.at is None:
            return "expiry unknown"
        return f"expires {self.at:%Y-%m-%d %H:%M} UTC"


@dataclass(frozen=True)
class ConnectionTestResult:
    account_id: str
    outcome: Outcome
    message: str
    reason: Reason | None = None
    ad_code: str | None = None
    dc: str | None = None  # the DC that gave the verdict
    bind_identity: str | None = None
    expiry: PasswordExpiry | None = None
    attempts: tuple[DcAttempt, ...] = ()
    notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()  # passed, but not beyond doubt (e.g. no KDC confirmed it)

    @property
    def passed(self) -> bool:
        return self.outcome is Outcome.PASSED


class _NoVerdict(Exception):
    """This DC gave no verdict; `outcome` says whether failing over is safe."""

    def __init__(self, outcome: AttemptOutcome, detail: str) -> None:
        super().__init__(detail)
        self.outcome = outcome
        self.detail = detail


def _tls(account: AccountConfig) -> Tls:
    if not account.tls_verify:
        return Tls(validate=ssl.CERT_NONE, version=ssl.PROTOCOL_TLS_CLIENT)
    return Tls(
        validate=ssl.CERT_REQUIRED,
        version=ssl.PROTOCOL_TLS_CLIENT,
        ca_certs_file=str(account.ca_file) if account.ca_file else None,
    )


def _is_tls_problem(exc: BaseException) -> bool:
    if "timed out" in str(exc):
        return False
    if isinstance(exc, ssl.SSLError | LDAPCertificateError | LDAPSSLConfigurationError | LDAPStartTLSError):
        return True
    text = str(exc).lower()
    return "ssl" in text or "certificate" in text or "tls" in text


def _describe(exc: BaseException) -> str:
    text = str(exc)
    while text.startswith("(") and text.endswith(",)"):  # ldap3 nests messages in tuple reprs
        text = text[1:-2].strip("'\"")
    return text or type(exc).__name__


@contextmanager
def _session(
    dc: DomainController, account: AccountConfig, user: str, password: SecretStr
) -> Iterator[Connection]:
    """An open, TLS-protected connection to one DC, not yet bound. Raises _NoVerdict."""
    server = Server(
        dc.host,
        port=dc.port,
        use_ssl=dc.use_ssl,
        tls=_tls(account),
        get_info="NO_INFO",
        connect_timeout=account.connect_timeout,
    )
    conn = Connection(
        server,
        user=user,
        password=password.get_secret_value(),
        authentication=SIMPLE,
        receive_timeout=account.receive_timeout,
        check_names=False,
        raise_exceptions=False,
        read_only=True,
    )
    try:
        try:
            conn.open()
            if not dc.use_ssl and not conn.start_tls():
                raise _NoVerdict(AttemptOutcome.TLS_ERROR, f"StartTLS refused: {conn.result}")
        except LDAPException as exc:
            kind = AttemptOutcome.TLS_ERROR if _is_tls_problem(exc) else AttemptOutcome.UNREACHABLE
            raise _NoVerdict(kind, _describe(exc)) from None
        yield conn
    finally:
        try:
            conn.unbind()
        except LDAPException:
            log.debug("unbind from %s failed", dc.url)


def _bind(conn: Connection) -> tuple[bool, int, str]:
    """Send the bind. An exception here means the password left: the verdict is unknown."""
    try:
        bound = bool(conn.bind())
    except LDAPSocketOpenError as exc:
        raise _NoVerdict(AttemptOutcome.UNREACHABLE, _describe(exc)) from None
    except LDAPException as exc:
        raise _NoVerdict(AttemptOutcome.NO_ANSWER, _describe(exc)) from None
    result = conn.result or {}
    if not bound and result.get("description") in (None, "", "Timeout"):
        raise _NoVerdict(AttemptOutcome.NO_ANSWER, str(conn.last_error or "no answer to the bind"))
    return bound, int(result.get("result", -1)), str(result.get("message", ""))


def filetime_to_datetime(value: int) -> datetime:
    return _FILETIME_EPOCH + timedelta(microseconds=value // 10)


def _first_int(entry: dict[str, object], name: str) -> int | None:
    values = entry.get(name)
    if isinstance(values, list):
        values = values[0] if values else None
    if values is None:
        return None
    try:
        return int(str(values))
    except ValueError:
        return None


def _naming_context(conn: Connection, account: AccountConfig) -> str | None:
    if account.base_dn:
        return account.base_dn
    if conn.search("", "(objectClass=*)", BASE, attributes=["defaultNamingContext"]) and conn.response:
        value = conn.response[0].get("attributes", {}).get("defaultNamingContext")
        if isinstance(value, list):
            value = value[0] if value else None
        return str(value) if value else None
    return None


def _find_user(
    conn: Connection, account: AccountConfig, name: AccountName, attributes: list[str]
) -> dict[str, object] | None:
    """The user's entry (dn + attributes), found by UPN or sAMAccountName."""
    base = _naming_context(conn, account)
    if base is None:
        return None
    sam = escape_filter_chars(name.user)
    if name.style == "upn":
        upn = escape_filter_chars(name.raw)
        query = f"(&(objectCategory=person)(|(userPrincipalName={upn})(sAMAccountName={sam})))"
    else:
        query = f"(&(objectCategory=person)(sAMAccountName={sam}))"
    if not conn.search(base, query, SUBTREE, attributes=[*attributes, "userPrincipalName"], size_limit=5):
        return None
    entries = [e for e in conn.response or [] if e.get("type") == "searchResEntry"]
    if name.style == "upn":
        exact = [
            e
            for e in entries
            if str(e.get("attributes", {}).get("userPrincipalName") or "").lower() == name.raw.lower()
        ]
        entries = exact or entries
    if len(entries) != 1:
        return None
    entry = dict(entries[0].get("attributes", {}))
    entry["dn"] = entries[0].get("dn")
    return entry


def _read_expiry(conn: Connection, account: AccountConfig) -> tuple[PasswordExpiry, str | None]:
    entry = _find_user(
        conn, account, account.name, ["msDS-UserPasswordExpiryTimeComputed", "userAccountControl"]
    )
    if entry is None:
        return PasswordExpiry(), None
    dn = str(entry["dn"]) if entry.get("dn") else None
    uac = _first_int(entry, "userAccountControl") or 0
    computed = _first_int(entry, "msDS-UserPasswordExpiryTimeComputed")
    if uac & UF_DONT_EXPIRE_PASSWD or computed == FILETIME_NEVER:
        return PasswordExpiry(never=True), dn
    if computed:
        return PasswordExpiry(at=filetime_to_datetime(computed)), dn
    return PasswordExpiry(), dn


@dataclass(frozen=True)
class _Precheck:
    refuse: Reason | None = None
    message: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)


def _precheck(dc: DomainController, account: AccountConfig, lookup_password: SecretStr) -> _Precheck:
    """Read the account's lockout state with the read-only lookup account, before sending the password.

    Raises _NoVerdict when the DC cannot be reached. Any other problem only adds a note: the persisted
    guard still protects the account.
    """
    assert account.lookup_username is not None
    with (
        active_secret(lookup_password),
        _session(dc, account, account.lookup_username, lookup_password) as conn,
    ):
        bound, code, diagnostic = _bind(conn)
        if not bound:
            failure = decode_bind_failure(code, diagnostic)
            return _Precheck(notes=(f"lockout pre-check unavailable: lookup account: {failure.message}",))
        base = _naming_context(conn, account)
        threshold = window = None
        if base and conn.search(
            base, "(objectClass=domain)", BASE, attributes=["lockoutThreshold", "lockOutObservationWindow"]
        ):
            domain = conn.response[0].get("attributes", {}) if conn.response else {}
            threshold = _first_int(domain, "lockoutThreshold")
            window = _first_int(domain, "lockOutObservationWindow")
        user = _find_user(
            conn,
            account,
            account.name,
            ["badPwdCount", "badPasswordTime", "msDS-User-Account-Control-Computed", "lockoutTime"],
        )
    if user is None or threshold is None:
        return _Precheck(
            notes=("lockout pre-check unavailable: the account or the domain policy is not readable",)
        )
    if (_first_int(user, "msDS-User-Account-Control-Computed") or 0) & UF_LOCKOUT:
        return _Precheck(
            Reason.ACCOUNT_LOCKED,
            "The account is locked out in Active Directory. atp-bot did not send the password; "
            "unlock the account first.",
        )
    bad_count = _first_int(user, "badPwdCount") or 0
    bad_time = _first_int(user, "badPasswordTime") or 0
    # AD forgets bad attempts older than the observation window (stored as negative 100 ns units).
    window_end = filetime_to_datetime(bad_time) + timedelta(microseconds=abs(window or 0) // 10)
    if bad_count and window and bad_time and window_end < datetime.now(UTC):
        bad_count = 0
    if threshold > 0 and bad_count >= threshold - 1:
        return _Precheck(
            Reason.NEAR_LOCKOUT,
            f"The account has {bad_count} recent bad password attempts in AD and locks out at {threshold}. "
            "atp-bot did not send the password; wait for the lockout observation window to pass.",
        )
    return _Precheck()


def _refused(
    account: AccountConfig, reason: Reason, message: str, dc: str | None = None
) -> ConnectionTestResult:
    return ConnectionTestResult(account.id, Outcome.REFUSED, message, reason=reason, dc=dc)


def _unreachable(
    account: AccountConfig, attempts: list[DcAttempt], notes: tuple[str, ...]
) -> ConnectionTestResult:
    last = attempts[-1]
    if last.outcome is AttemptOutcome.NO_ANSWER:
        reason, summary = (
            Reason.NO_ANSWER,
            f"{last.url} did not answer the bind in time. The password was sent, so atp-bot did not retry it "
            "on other domain controllers (lockout protection); try again later.",
        )
    elif all(a.outcome is AttemptOutcome.TLS_ERROR for a in attempts):
        reason, summary = Reason.TLS_ERROR, "No domain controller could be reached securely (TLS failed)."
    else:
        reason, summary = Reason.DC_UNREACHABLE, "No domain controller could be reached."
    details = "; ".join(f"{a.url}: {a.detail}" for a in attempts)
    return ConnectionTestResult(
        account.id,
        Outcome.UNREACHABLE,
        f"{summary} {details}",
        reason=reason,
        attempts=tuple(attempts),
        notes=notes,
    )


def _stale(
    account: AccountConfig,
    dc: DomainController,
    identity: str | None,
    attempts: list[DcAttempt],
    notes: tuple[str, ...],
) -> ConnectionTestResult:
    """The bind passed but the KDC refused the password: AD served the bind with the previous one."""
    attempts.append(DcAttempt(dc.url, AttemptOutcome.REJECTED, "bind accepted; the KDC refused the password"))
    log.warning("account %s: %s accepted a password that the KDC refused (stale)", account.id, dc.url)
    return ConnectionTestResult(
        account.id,
        Outcome.REJECTED,
        STALE_PASSWORD_MESSAGE,
        reason=Reason.STALE_PASSWORD,
        dc=dc.url,
        bind_identity=identity or account.username,
        attempts=tuple(attempts),
        notes=notes,
    )


def run_connection_test(
    account: AccountConfig, password: SecretStr, *, guard: LockoutGuard, lease: AccountLease
) -> ConnectionTestResult:
    """Test `password` for `account` against its domain controllers. Never raises for peer problems."""
    if lease.account_id != account.id:
        raise ValueError("the lease is for another account")
    decision = guard.check(lease)
    if not decision.allowed:
        return _refused(account, Reason.GUARD_LIMIT, decision.message)
    attempts: list[DcAttempt] = []
    notes: tuple[str, ...] = ()
    lookup_password = account.lookup_password() if account.lookup_username else None
    with active_secret(password):
        for dc in account.dcs:
            try:
                if lookup_password is not None:
                    precheck = _precheck(dc, account, lookup_password)
                    notes = precheck.notes
                    if precheck.refuse:
                        return _refused(account, precheck.refuse, precheck.message, dc=dc.url)
                with _session(dc, account, account.username, password) as conn:
                    bound, code, diagnostic = _bind(conn)
                    if bound:
                        expiry, identity = _read_expiry(conn, account)
                        current = check_current_password(conn, account, identity, password)
                        if current.verdict.may_count_against_lockout:
                            reason = Reason.STALE_PASSWORD if current.stale else Reason.NO_ANSWER
                            guard.record_rejection(lease, reason)
                        if current.stale:
                            return _stale(account, dc, identity, [*attempts], notes)
                        attempts.append(DcAttempt(dc.url, AttemptOutcome.OK, "bind accepted"))
                        log.info("account %s: connection test passed on %s", account.id, dc.url)
                        return ConnectionTestResult(
                            account.id,
                            Outcome.PASSED,
                            f"{dc.url} accepted the password; it {expiry.describe()}.",
                            dc=dc.url,
                            bind_identity=identity or account.username,
                            expiry=expiry,
                            attempts=tuple(attempts),
                            notes=(*notes, *current.notes),
                            warnings=current.warnings,
                        )
            except _NoVerdict as problem:
                attempts.append(DcAttempt(dc.url, problem.outcome, problem.detail))
                log.warning("account %s: %s gave no verdict: %s", account.id, dc.url, problem.detail)
                if problem.outcome is AttemptOutcome.NO_ANSWER:
                    guard.record_rejection(lease, Reason.NO_ANSWER)
                    break
                continue
            failure = decode_bind_failure(code, diagnostic)
            guard.record_rejection(lease, failure.reason)
            attempts.append(DcAttempt(dc.url, AttemptOutcome.REJECTED, failure.message))
            log.info("account %s: %s rejected the credential (%s)", account.id, dc.url, failure.reason)
            return ConnectionTestResult(
                account.id,
                Outcome.REJECTED,
                failure.message,
                reason=failure.reason,
                ad_code=failure.ad_code,
                dc=dc.url,
                attempts=tuple(attempts),
                notes=notes,
            )
    return _unreachable(account, attempts, notes)


class ExpiryUnavailable(Exception):
    """The password expiry could not be read; the message is safe to show."""


def read_password_expiry(account: AccountConfig) -> PasswordExpiry:
    """Read the account's password expiry with its read-only lookup account (no bind as the account).

    Fails over between DCs only while none answered; a refused lookup bind stops at once, so the lookup
    account is never pushed towards lockout.
    """
    if account.lookup_username is None:
        raise ValueError(f"account {account.id} has no lookup account")
    lookup_password = account.lookup_password()
    problems = []
    with active_secret(lookup_password):
        for dc in account.dcs:
            try:
                with _session(dc, account, account.lookup_username, lookup_password) as conn:
                    bound, code, diagnostic = _bind(conn)
                    if not bound:
                        failure = decode_bind_failure(code, diagnostic)
                        raise ExpiryUnavailable(f"{dc.url}: lookup account: {failure.message}")
                    expiry, dn = _read_expiry(conn, account)
                    if dn is None:
                        raise ExpiryUnavailable(
                            f"{dc.url}: {account.username} not found by the lookup account"
                        )
                    return expiry
            except _NoVerdict as problem:
                problems.append(f"{dc.url}: {problem.detail}")
    raise ExpiryUnavailable("no domain controller answered: " + "; ".join(problems))
