"""Reading, with the lookup account, what AD knows of the service account: its lockout state and when
its password expires. Read-only; the tested password is never used here."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from ldap3 import BASE, SUBTREE, Connection
from ldap3.utils.conv import escape_filter_chars
from pydantic import SecretStr

from bot.config import AccountConfig, AccountName, DomainController
from bot.directory.ad_errors import Reason
from bot.directory.connection import NoVerdict
from bot.directory.lookup_guard import LookupBlocked, LookupGuard, lookup_session
from bot.infra.redaction import active_secret

log = logging.getLogger(__name__)

FILETIME_NEVER = 0x7FFFFFFFFFFFFFFF
UF_DONT_EXPIRE_PASSWD = 0x10000
UF_LOCKOUT = 0x10
_FILETIME_EPOCH = datetime(1601, 1, 1, tzinfo=UTC)


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


def filetime_to_datetime(value: int) -> datetime:
    return _FILETIME_EPOCH + timedelta(microseconds=value // 10)


def first_int(entry: dict[str, object], name: str) -> int | None:
    values = entry.get(name)
    if isinstance(values, list):
        values = values[0] if values else None
    if values is None:
        return None
    try:
        return int(str(values))
    except ValueError:
        return None


def _root_attribute(conn: Connection, name: str) -> str | None:
    """One value of the rootDSE, or None."""
    if conn.search("", "(objectClass=*)", BASE, attributes=[name]) and conn.response:
        value = conn.response[0].get("attributes", {}).get(name)
        if isinstance(value, list):
            value = value[0] if value else None
        return str(value) if value else None
    return None


def naming_context(conn: Connection, account: AccountConfig) -> str | None:
    return account.base_dn or _root_attribute(conn, "defaultNamingContext")


def server_identity(conn: Connection) -> str | None:
    """Which domain controller answered: its rootDSE `dsServiceName`, the same whatever URL reached it."""
    identity = _root_attribute(conn, "dsServiceName")
    return identity.lower() if identity else None


def find_user(
    conn: Connection, account: AccountConfig, name: AccountName, attributes: list[str]
) -> dict[str, object] | None:
    """The user's entry (dn + attributes), found by UPN or sAMAccountName."""
    base = naming_context(conn, account)
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


def read_expiry(conn: Connection, account: AccountConfig) -> tuple[PasswordExpiry, str | None]:
    entry = find_user(
        conn, account, account.name, ["msDS-UserPasswordExpiryTimeComputed", "userAccountControl"]
    )
    if entry is None:
        return PasswordExpiry(), None
    dn = str(entry["dn"]) if entry.get("dn") else None
    uac = first_int(entry, "userAccountControl") or 0
    computed = first_int(entry, "msDS-UserPasswordExpiryTimeComputed")
    if uac & UF_DONT_EXPIRE_PASSWD or computed == FILETIME_NEVER:
        return PasswordExpiry(never=True), dn
    if computed:
        return PasswordExpiry(at=filetime_to_datetime(computed)), dn
    return PasswordExpiry(), dn


def domain_lockout_policy(conn: Connection, account: AccountConfig) -> tuple[int | None, int | None]:
    """The domain's (lockoutThreshold, lockOutObservationWindow), as far as they can be read."""
    base = naming_context(conn, account)
    if not base or not conn.search(
        base, "(objectClass=domain)", BASE, attributes=["lockoutThreshold", "lockOutObservationWindow"]
    ):
        return None, None
    domain = conn.response[0].get("attributes", {}) if conn.response else {}
    return first_int(domain, "lockoutThreshold"), first_int(domain, "lockOutObservationWindow")


@dataclass(frozen=True)
class LockoutPrecheck:
    """AD's own view of the account's lockout state, read by the lookup account; without `threshold`,
    the view is unavailable and `notes` say why."""

    refuse: Reason | None = None
    message: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)
    bad_count: int | None = None  # recent bad password attempts (older than the window: 0)
    threshold: int | None = None  # the domain's lockoutThreshold (0: never locks out)

    def describe(self) -> str:
        if self.threshold is None:
            return "; ".join(self.notes) or "AD's lockout state is unknown"
        locked = "locked out" if self.refuse is Reason.ACCOUNT_LOCKED else "not locked out"
        return f"badPwdCount {self.bad_count} of lockoutThreshold {self.threshold}, {locked}"


def read_lockout_status(
    dc: DomainController, account: AccountConfig, lookup_password: SecretStr, *, lookups: LookupGuard
) -> LockoutPrecheck:
    """Read the account's lockout state with the read-only lookup account, before sending the password.

    Raises NoVerdict when the DC cannot be reached. Any other problem only adds a note (a refused or
    suspended lookup account included): the persisted guard still protects the account.
    """
    try:
        with active_secret(lookup_password), lookup_session(dc, account, lookup_password, lookups) as conn:
            threshold, window = domain_lockout_policy(conn, account)
            lookups.note_window(account, window)
            user = find_user(
                conn,
                account,
                account.name,
                ["badPwdCount", "badPasswordTime", "msDS-User-Account-Control-Computed", "lockoutTime"],
            )
    except LookupBlocked as blocked:
        return LockoutPrecheck(notes=(f"lockout pre-check unavailable: {blocked.message}",))
    if user is None or threshold is None:
        return LockoutPrecheck(
            notes=("lockout pre-check unavailable: the account or the domain policy is not readable",)
        )
    bad_count = first_int(user, "badPwdCount") or 0
    bad_time = first_int(user, "badPasswordTime") or 0
    # AD forgets bad attempts older than the observation window (stored as negative 100 ns units).
    window_end = filetime_to_datetime(bad_time) + timedelta(microseconds=abs(window or 0) // 10)
    if bad_count and window and bad_time and window_end < datetime.now(UTC):
        bad_count = 0
    if (first_int(user, "msDS-User-Account-Control-Computed") or 0) & UF_LOCKOUT:
        return LockoutPrecheck(
            Reason.ACCOUNT_LOCKED,
            "The account is locked out in Active Directory. atp-bot did not send the password; "
            "unlock the account first.",
            bad_count=bad_count,
            threshold=threshold,
        )
    if threshold > 0 and bad_count >= threshold - 1:
        return LockoutPrecheck(
            Reason.NEAR_LOCKOUT,
            f"The account has {bad_count} recent bad password attempts in AD and locks out at {threshold}. "
            "atp-bot did not send the password; wait for the lockout observation window to pass.",
            bad_count=bad_count,
            threshold=threshold,
        )
    return LockoutPrecheck(bad_count=bad_count, threshold=threshold)


class PrecheckUnavailable(Exception):
    """No domain controller answered the lookup account; the message is safe to show."""


def lockout_precheck(account: AccountConfig, *, lookups: LookupGuard) -> LockoutPrecheck:
    """AD's view of the account's lockout state, through its lookup account (the account's own password
    is never sent). Fails over between DCs while none answers; raises PrecheckUnavailable when none did."""
    if account.lookup_username is None:
        raise ValueError(f"account {account.id} has no lookup account")
    lookup_password = account.lookup_password()
    problems = []
    for dc in account.dcs:
        try:
            return read_lockout_status(dc, account, lookup_password, lookups=lookups)
        except NoVerdict as problem:
            problems.append(f"{dc.url}: {problem.detail}")
    raise PrecheckUnavailable("no domain controller answered: " + "; ".join(problems))


class ExpiryUnavailable(Exception):
    """The password expiry could not be read; the message is safe to show."""


def read_password_expiry(account: AccountConfig, *, lookups: LookupGuard) -> PasswordExpiry:
    """Read the account's password expiry with its read-only lookup account (no bind as the account).

    Fails over between DCs only while none answered; a refused lookup bind stops at once and suspends
    the lookup account (`lookups`), so that it is never pushed towards lockout.
    """
    try:
        with lookup_connection(account, lookups=lookups) as (dc, conn):
            expiry, dn = read_expiry(conn, account)
    except LookupUnavailable as problem:
        raise ExpiryUnavailable(problem.message) from None
    if dn is None:
        raise ExpiryUnavailable(f"{dc}: {account.username} not found by the lookup account")
    return expiry


class LookupUnavailable(Exception):
    """The lookup account could not read the directory; `unreachable` when no DC gave an answer."""

    def __init__(self, message: str, *, unreachable: bool) -> None:
        super().__init__(message)
        self.message = message
        self.unreachable = unreachable


@contextmanager
def lookup_connection(account: AccountConfig, *, lookups: LookupGuard) -> Iterator[tuple[str, Connection]]:
    """(DC URL, connection) bound as the read-only lookup account on the first DC that answers.

    Raises LookupUnavailable. A refused lookup bind stops at once (no failover) and suspends the lookup
    account, so that it is never pushed towards lockout; a suspended one is not bound at all.
    """
    if account.lookup_username is None:
        raise ValueError(f"account {account.id} has no lookup account")
    lookup_password = account.lookup_password()
    problems = []
    with active_secret(lookup_password):
        for dc in account.dcs:
            with ExitStack() as stack:
                try:
                    conn = stack.enter_context(lookup_session(dc, account, lookup_password, lookups))
                except NoVerdict as problem:
                    problems.append(f"{dc.url}: {problem.detail}")
                    continue
                except LookupBlocked as blocked:
                    raise LookupUnavailable(blocked.message, unreachable=False) from None
                yield dc.url, conn
                return
    raise LookupUnavailable("no domain controller answered: " + "; ".join(problems), unreachable=True)
