"""The connection test: does Active Directory accept this password for the directory service account?

Like the ATP console's "Test Connection", but careful with the account: a simple bind over LDAPS (or
StartTLS) to the configured domain controllers in order, failing over only when a DC cannot be reached.
A credential that one DC rejected is never tried on another DC, and the lockout guard refuses tests that
could lock the account out.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from enum import StrEnum

from ldap3 import Connection
from pydantic import SecretStr

from bot.config import AccountConfig, DomainController
from bot.directory.ad_errors import STALE_PASSWORD_MESSAGE, Reason, decode_bind_failure
from bot.directory.connection import AttemptOutcome, NoVerdict, open_session, send_bind
from bot.directory.kerberos_check import UNCONFIRMED, CurrentPasswordCheck, check_current_password
from bot.directory.lockout import AccountLease, LockoutGuard
from bot.directory.lookup import (
    ExpiryUnavailable,
    LockoutPrecheck,
    PasswordExpiry,
    PrecheckUnavailable,
    lockout_precheck,
    read_expiry,
    read_lockout_status,
    read_password_expiry,
)
from bot.directory.lookup_guard import LookupGuard
from bot.infra.logging_setup import TOLD
from bot.infra.redaction import active_secret

log = logging.getLogger(__name__)


class Outcome(StrEnum):
    PASSED = "passed"
    REJECTED = "rejected"  # a DC answered and refused the credential
    REFUSED = "refused"  # atp-bot did not send the password (lockout protection, busy)
    UNREACHABLE = "unreachable"  # no DC gave a verdict


@dataclass(frozen=True)
class DcAttempt:
    url: str
    outcome: AttemptOutcome
    detail: str


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
    summary: str | None = None  # the message without its per-DC details (which `attempts` hold)
    warnings: tuple[str, ...] = ()  # passed, but not beyond doubt (e.g. no KDC confirmed it)
    kdc_unanswered: bool = False  # the KDC got the password but never answered: it may have counted it

    @property
    def passed(self) -> bool:
        return self.outcome is Outcome.PASSED


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
        summary=summary,
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
    log.warning(
        "account %s: %s accepted a password that the KDC refused (stale)", account.id, dc.url, extra=TOLD
    )
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


def _unconfirmed(
    account: AccountConfig,
    dc: DomainController,
    identity: str | None,
    attempts: list[DcAttempt],
    notes: tuple[str, ...],
    current: CurrentPasswordCheck,
) -> ConnectionTestResult:
    """The bind passed, no KDC gave a verdict, and the account requires one: a failed test."""
    detail = current.verdict.detail
    attempts.append(DcAttempt(dc.url, AttemptOutcome.REJECTED, f"bind accepted; {UNCONFIRMED} ({detail})"))
    log.warning(
        "account %s: %s accepted a password that no KDC confirmed (required)", account.id, dc.url, extra=TOLD
    )
    return ConnectionTestResult(
        account.id,
        Outcome.REJECTED,
        f"{dc.url} accepted the password, but it was {UNCONFIRMED} ({detail}), and account "
        f'{account.id} requires that (kerberos_check = "required").',
        reason=Reason.KERBEROS_UNCONFIRMED,
        dc=dc.url,
        bind_identity=identity or account.username,
        attempts=tuple(attempts),
        notes=(*notes, *current.notes),
        kdc_unanswered=current.verdict.may_count_against_lockout,
    )


def _after_bind(
    conn: Connection,
    account: AccountConfig,
    dc: DomainController,
    password: SecretStr,
    attempts: list[DcAttempt],
    notes: tuple[str, ...],
) -> ConnectionTestResult:
    """The bind passed: the KDC tells whether the password is the current one."""
    expiry, identity = read_expiry(conn, account)
    current = check_current_password(conn, account, identity, password)
    if current.stale:
        return _stale(account, dc, identity, attempts, notes)
    if not current.confirmed and account.kerberos_check == "required":
        return _unconfirmed(account, dc, identity, attempts, notes, current)
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
        kdc_unanswered=current.verdict.may_count_against_lockout,
    )


def run_connection_test(
    account: AccountConfig, password: SecretStr, *, guard: LockoutGuard, lease: AccountLease
) -> ConnectionTestResult:
    """Test `password` for `account` against its domain controllers. Never raises for peer problems.

    The guard counts the test before the password leaves and settles it from the verdict; if this
    process dies in between, the test stays counted as a rejection (AD may have counted it)."""
    if lease.account_id != account.id:
        raise ValueError("the lease is for another account")
    lookup_password = account.lookup_password() if account.lookup_username else None
    decision = guard.admit(lease)
    if decision.attempt is None:
        return _refused(account, decision.reason or Reason.GUARD_LIMIT, decision.message)
    result = _test_on_dcs(account, password, lookup_password, guard.lookups)
    if not guard.settle(decision.attempt, counted_rejection(result)):
        until = guard.counted_until(decision.attempt)
        note = (
            f"the lockout guard could not record this test's outcome; it counts it as a rejected test "
            f"until {until:%Y-%m-%d %H:%M} UTC"
        )
        result = replace(result, notes=(*result.notes, note))
    return result


def counted_rejection(result: ConnectionTestResult) -> Reason | None:
    """What the guard counts for a test: a rejection, or a bind whose answer never came (AD may have
    counted it); None when AD accepted the password or it was never sent."""
    if result.reason is Reason.KERBEROS_UNCONFIRMED:  # AD accepted the password: only a KDC may count it
        return Reason.NO_ANSWER if result.kdc_unanswered else None
    if result.outcome is Outcome.REJECTED or result.reason is Reason.NO_ANSWER:
        return result.reason
    if result.kdc_unanswered:
        return Reason.NO_ANSWER
    return None


def _test_on_dcs(
    account: AccountConfig, password: SecretStr, lookup_password: SecretStr | None, lookups: LookupGuard
) -> ConnectionTestResult:
    """The DCs in order, failing over only while none received the password."""
    attempts: list[DcAttempt] = []
    notes: tuple[str, ...] = ()
    with active_secret(password):
        for dc in account.dcs:
            try:
                if lookup_password is not None:
                    precheck = read_lockout_status(dc, account, lookup_password, lookups=lookups)
                    notes = precheck.notes
                    if precheck.refuse:
                        return _refused(account, precheck.refuse, precheck.message, dc=dc.url)
                with open_session(dc, account, account.username, password) as conn:
                    bound, code, diagnostic = send_bind(conn)
                    if bound:
                        return _after_bind(conn, account, dc, password, [*attempts], notes)
            except NoVerdict as problem:
                attempts.append(DcAttempt(dc.url, problem.outcome, problem.detail))
                log.warning(
                    "account %s: %s gave no verdict: %s", account.id, dc.url, problem.detail, extra=TOLD
                )
                if problem.outcome is AttemptOutcome.NO_ANSWER:
                    break
                continue
            failure = decode_bind_failure(code, diagnostic)
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


__all__ = [
    "AttemptOutcome",
    "ConnectionTestResult",
    "DcAttempt",
    "ExpiryUnavailable",
    "LockoutPrecheck",
    "Outcome",
    "PasswordExpiry",
    "PrecheckUnavailable",
    "counted_rejection",
    "lockout_precheck",
    "read_password_expiry",
    "run_connection_test",
]
