"""What an approval checks again before it saves a held password: the account as its test left it.

A held password waits minutes for its approver. Meanwhile the password may be changed in AD (the held one
is then stale, and AD keeps accepting the previous password over LDAP for a while, so nothing else would
tell), or another password may be saved through atp-bot or straight into the store. The baseline is read
under the account's lock right after the test passed; the approval reads the same things again under the
lock and saves only if none of them moved. `pwdLastSet` is read with the read-only lookup account, never
by binding as the account itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from ldap3.core.exceptions import LDAPException

from bot.audit import AuditAction, AuditEvent, AuditOutcome, AuditTrail, record_or_log
from bot.config import AccountConfig, ConfigError
from bot.directory import LookupGuard, LookupUnavailable, lookup_connection
from bot.directory.lookup import filetime_to_datetime, find_user, first_int
from bot.store import CredentialStore, StoreError

STALE = "stale"  # the audit reason and ChangeOutcome.error_reason of an approval refused as stale


@dataclass(frozen=True)
class Baseline:
    """The account when its held password passed its test."""

    taken_at: datetime  # UTC; a save the store recorded later than this makes the approval stale
    last_save: int | None  # the audit id of the account's latest save (every replica and the CLI write it)
    password_last_set: int | None  # AD's pwdLastSet (FILETIME) read by the lookup account; None: not read
    unchecked: str | None = None  # why pwdLastSet was not read, so not checked again: told to the approver

    def as_json(self) -> dict[str, object]:
        """What the held request keeps (`last_save` has a column of its own)."""
        return {
            "taken_at": self.taken_at.isoformat(),
            "pwd_last_set": self.password_last_set,
            "unchecked": self.unchecked,
        }

    @classmethod
    def from_json(cls, data: dict[str, object], last_save: int | None) -> Baseline:
        last_set = data.get("pwd_last_set")
        unchecked = data.get("unchecked")
        return cls(
            taken_at=datetime.fromisoformat(str(data["taken_at"])),
            last_save=last_save,
            password_last_set=int(str(last_set)) if last_set is not None else None,
            unchecked=str(unchecked) if unchecked is not None else None,
        )


class PasswordLastSetUnreadable(Exception):
    """The lookup account could not read the account's pwdLastSet (safe text)."""


def read_password_last_set(account: AccountConfig, lookups: LookupGuard) -> int:
    """The account's pwdLastSet, read with its lookup account on the first DC that answers."""
    try:
        with lookup_connection(account, lookups=lookups) as (dc, conn):
            entry = find_user(conn, account, account.name, ["pwdLastSet"])
            last_set = first_int(entry, "pwdLastSet") if entry is not None else None
            if last_set is None:
                raise PasswordLastSetUnreadable(f"{dc}: pwdLastSet of {account.username} is not readable")
            return last_set
    except LookupUnavailable as problem:
        raise PasswordLastSetUnreadable(problem.message) from None
    except (LDAPException, ConfigError) as exc:
        unread = f"the lookup account could not read it: {type(exc).__name__}"
        raise PasswordLastSetUnreadable(unread) from None


def take_baseline(account: AccountConfig, audit: AuditTrail, lookups: LookupGuard) -> Baseline:
    """Right after a passed test, under the account's lock. Without a lookup account, or when it cannot
    read pwdLastSet, the baseline says so (the approver is told that this is not checked again)."""
    taken_at = datetime.now(UTC)
    last_save = audit.last_save(account.id)
    if account.lookup_username is None:
        unchecked = (
            "the account has no lookup account, so atp-bot cannot check at approval that its password "
            "was not changed in AD since this test"
        )
        return Baseline(taken_at, last_save, None, unchecked)
    try:
        return Baseline(taken_at, last_save, read_password_last_set(account, lookups))
    except PasswordLastSetUnreadable as problem:
        unchecked = (
            f"pwdLastSet could not be read ({problem}), so atp-bot cannot check at approval that the "
            "password was not changed in AD since this test"
        )
        return Baseline(taken_at, last_save, None, unchecked)


def changed_since(
    account: AccountConfig,
    store: CredentialStore,
    audit: AuditTrail,
    baseline: Baseline | None,
    lookups: LookupGuard,
) -> str | None:
    """Why the held password is stale (one safe line), or None when nothing moved since its test."""
    if baseline is None:
        return (
            "this request was held by an earlier atp-bot, which did not record what an approval checks "
            "again; ask again"
        )
    if audit.last_save(account.id) != baseline.last_save:
        return "a newer password was saved meanwhile"
    try:
        saved = store.metadata(account.id)
    except StoreError as exc:
        return f"the store could not say when it last saved a password ({exc.message})"
    if saved is not None and saved.saved_at > baseline.taken_at:
        return f"the {saved.backend} store saved a password at {saved.saved_at:%H:%M:%S} UTC, after the test"
    if baseline.password_last_set is None:
        return None
    try:
        last_set = read_password_last_set(account, lookups)
    except PasswordLastSetUnreadable as problem:
        return f"atp-bot could not confirm that the password was not changed in AD since the test ({problem})"
    if last_set != baseline.password_last_set:
        return (
            f"the password of {account.username} was changed in AD at {_filetime(last_set)}, after the test: "
            "the held password may no longer be the current one"
        )
    return None


def _filetime(value: int) -> str:
    return f"{filetime_to_datetime(value):%Y-%m-%d %H:%M:%S} UTC" if value > 0 else "an unknown time"


def record_stale(audit: AuditTrail, actor: str, account_id: str, note: str, why: str) -> None:
    """Audit an approved password not saved because it is stale (`save`, refused, `stale`)."""
    refused = AuditEvent(
        actor=actor,
        action=AuditAction.SAVE,
        account=account_id,
        outcome=AuditOutcome.REFUSED,
        reason=STALE,
        detail=f"{note}: {why}; nothing was saved",
    )
    record_or_log(audit, refused)
