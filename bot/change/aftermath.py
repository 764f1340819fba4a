"""What became of a change that something unforeseen stopped: saved or not, told truthfully."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from bot.audit import AuditAction, AuditSink
from bot.change.failures import failure_reason, one_line, report_failure
from bot.change.journal import InFlight
from bot.change.outcome import ChangeOutcome, ChangeStatus
from bot.change.recovery import Verdict, verdict
from bot.config import AccountConfig
from bot.directory import ConnectionTestResult
from bot.store import CredentialMetadata, CredentialStore

log = logging.getLogger(__name__)


@dataclass
class Attempt:
    """How far a change got, so that an unexpected failure is told truthfully (saved or not)."""

    test: ConnectionTestResult | None = None
    saving: InFlight | None = None  # the journal entry once the store was called
    saved: CredentialMetadata | None = None


def went_wrong(
    store: CredentialStore,
    audit: AuditSink,
    account: AccountConfig,
    actor: str,
    attempt: Attempt,
    exc: Exception,
) -> ChangeOutcome:
    """Something unforeseen stopped the change: tell what became of the password, truthfully."""
    saved = attempt.saved
    unconfirmed = False
    if saved is None and attempt.saving is not None:
        saved, unconfirmed = save_landed(store, attempt.saving)
    if saved is not None:
        aftermath = f"the new password was saved in the {saved.backend} store"
    elif unconfirmed:
        aftermath = f"the {store.backend} store did not confirm the save"
    else:
        aftermath = "nothing was saved"
    line = report_failure(
        audit,
        actor,
        AuditAction.CHANGE,
        account.id,
        exc,
        doing=f"account {account.id}: the password change",
        aftermath=aftermath,
    )
    if saved is not None:
        message = f"Saved (in the {saved.backend} store), but then something went wrong: {line}."
    elif unconfirmed:
        message = (
            f"Something went wrong while the {store.backend} store was saving: {line}. The store "
            "did not confirm the save: check whether it holds the new password."
        )
    else:
        message = f"Something went wrong: {line}. Nothing was saved."
    return ChangeOutcome(
        account.id,
        ChangeStatus.SAVED if saved is not None else ChangeStatus.FAILED,
        message,
        test=attempt.test,
        saved=saved,
        changed_at=saved.saved_at if saved is not None else None,
        error_reason=failure_reason(exc),
        problem=line,
    )


def save_landed(store: CredentialStore, entry: InFlight) -> tuple[CredentialMetadata | None, bool]:
    """After the store failed unexpectedly mid-save: (the metadata if the save landed, whether that
    cannot be known), decided as for a change cut short by a crash."""
    try:
        metadata = store.metadata(entry.account_id)
    except Exception as exc:  # noqa: BLE001 - then the save is unconfirmed, which is what is said
        log.error("account %s: cannot read the store's metadata: %s", entry.account_id, one_line(exc))
        return None, True
    decided = verdict(entry, metadata)
    return (metadata if decided is Verdict.SAVED else None), decided is Verdict.UNCONFIRMED
