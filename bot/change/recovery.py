"""Resolving a change that a crash cut short: did its save land? Audit the answer, clear the entry.

A change journal entry left behind (see `bot.change.journal`) is compared with the store's metadata:
a credential saved by the entry's actor at or after the entry's start is the one that change saved.
The embedded store commits a save in one SQLite transaction, so for it the answer is certain. An
external store (command, ATA Center) that was cut short while saving and never confirmed may or may not
have applied the new password: that is said, not guessed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from bot.audit import AuditAction, AuditError, AuditEvent, AuditOutcome, AuditRow, AuditTrail
from bot.change.journal import ChangeJournal, InFlight, Phase
from bot.infra.logging_setup import TOLD
from bot.store import CredentialMetadata, CredentialStore, StoreError

log = logging.getLogger(__name__)

RECENT_ROWS = 200  # how far back the account's audit rows are searched for the change's SAVE row


class Verdict(StrEnum):
    NOT_SAVED = "not-saved"  # the store still holds the previous credential
    SAVED = "saved"  # the new credential had been saved before the stop
    UNCONFIRMED = "unconfirmed"  # an external store was stopped mid-save and never confirmed it


@dataclass(frozen=True)
class Recovery:
    """What became of one interrupted change."""

    entry: InFlight
    verdict: Verdict
    saved: CredentialMetadata | None  # the store's metadata when the verdict is SAVED
    save_audited: bool  # the SAVE row had been written before the stop

    @property
    def account_id(self) -> str:
        return self.entry.account_id

    def describe(self) -> str:
        """One line for the audit detail, the log and the CLI (no secret: there is none to show)."""
        entry = self.entry
        start = (
            f"the change by {entry.actor} started {entry.started_at:%Y-%m-%d %H:%M:%S} UTC "
            f"was interrupted while {entry.phase.value}"
        )
        if self.verdict is Verdict.SAVED:
            audited = "" if self.save_audited else "; the save itself had not been audited"
            backend = self.saved.backend if self.saved else entry.backend
            when = f" at {self.saved.saved_at:%H:%M:%S} UTC" if self.saved else ""
            return f"{start}; the new password had been saved in the {backend} store{when}{audited}"
        if self.verdict is Verdict.UNCONFIRMED:
            return (
                f"{start}; the {entry.backend} store never confirmed the save: "
                "the previous password may still be in use"
            )
        return f"{start}; nothing was saved: the previous password is still in use"


def landed(entry: InFlight, saved: CredentialMetadata | None) -> bool:
    """Whether the store's latest save of the account is the one this change made."""
    return (
        saved is not None
        and saved.backend == entry.backend
        and saved.saved_by == entry.actor
        and saved.saved_at >= entry.started_at
    )


def verdict(entry: InFlight, saved: CredentialMetadata | None) -> Verdict:
    if entry.phase is Phase.CHECKING or landed(entry, saved):  # checking: the save was confirmed
        return Verdict.SAVED
    if entry.phase is Phase.SAVING and entry.backend != "embedded":
        return Verdict.UNCONFIRMED
    return Verdict.NOT_SAVED


def save_audited(entry: InFlight, rows: list[AuditRow]) -> bool:
    return any(
        row.action == AuditAction.SAVE
        and row.outcome == AuditOutcome.OK
        and row.actor == entry.actor
        and row.time >= entry.started_at
        for row in rows
    )


def already_audited(entry: InFlight, rows: list[AuditRow]) -> bool:
    """A process killed between auditing the entry and removing it: its INTERRUPTED row exists."""
    return any(
        row.action == AuditAction.INTERRUPTED and change_tag(entry) in (row.detail or "") for row in rows
    )


def change_tag(entry: InFlight) -> str:
    return f"change {entry.id}"


def resolve(
    entry: InFlight, store: CredentialStore, audit: AuditTrail, now: datetime, *, how: str = "found"
) -> Recovery:
    """Decide what became of `entry` and audit it as one INTERRUPTED row (`how`: found at a start, or
    stopped in this process). Raises StoreError or AuditError when the store cannot tell or the trail
    cannot record it: the entry is then kept for the next try. The caller holds the account's lock."""
    saved = store.metadata(entry.account_id)
    result = verdict(entry, saved)
    rows = audit.recent(entry.account_id, RECENT_ROWS)
    recovery = Recovery(
        entry,
        result,
        saved if landed(entry, saved) else None,
        result is Verdict.SAVED and save_audited(entry, rows),
    )
    if already_audited(entry, rows):
        return recovery
    outcome = AuditOutcome.OK if result is Verdict.SAVED else AuditOutcome.ERROR
    detail = f"{recovery.describe()} ({change_tag(entry)}, {how} at {now:%Y-%m-%d %H:%M:%S} UTC)"
    interrupted = AuditEvent(
        actor=entry.actor,
        action=AuditAction.INTERRUPTED,
        account=entry.account_id,
        outcome=outcome,
        reason=result,
        detail=detail,
    )
    audit.record(interrupted)
    # A change found at a start is shown by the face (`ChangeProgress.recovered`); one stopped here is not.
    log.warning(
        "account %s: %s", entry.account_id, recovery.describe(), extra=TOLD if how == "found" else None
    )
    return recovery


def resolve_leftovers(
    journal: ChangeJournal, store: CredentialStore, audit: AuditTrail, account_id: str
) -> list[Recovery]:
    """Resolve the account's leftover journal entries; the caller holds the account's lock, so no change
    of the account is running and every entry found is one that a crash cut short (but for the follow-up
    checks of a process still running)."""
    journal.remove_stray_temporary(account_id)
    recoveries = []
    for entry in journal.entries(account_id):
        if entry.running_elsewhere:
            continue
        try:
            recovery = resolve(entry, store, audit, datetime.now(UTC))
        except (StoreError, AuditError) as exc:
            log.error(
                "account %s: an interrupted change (started %s by %s) could not be resolved, "
                "kept for the next start: %s",
                account_id,
                entry.started_at,
                entry.actor,
                exc,
            )
            continue
        journal.end(entry)
        recoveries.append(recovery)
    return recoveries


def resolve_stopped(
    journal: ChangeJournal, store: CredentialStore, audit: AuditTrail, entry: InFlight
) -> None:
    """A change stopped in this process (Ctrl-C): resolved at once, under the lock it still holds, as the
    next start would; if that fails too, the entry stays for the next start."""
    try:
        resolve(entry, store, audit, datetime.now(UTC), how="stopped")
    except (StoreError, AuditError) as exc:
        log.error("account %s: the interrupted change is kept for the next start: %s", entry.account_id, exc)
        return
    journal.end(entry)


def resolve_checks_stopped(
    journal: ChangeJournal, store: CredentialStore, audit: AuditTrail, account_id: str
) -> None:
    """The follow-up checks of this process's saved change stopped (Ctrl-C): as `resolve_stopped`."""
    for entry in journal.checks_of_this_process(account_id):
        resolve_stopped(journal, store, audit, entry)
