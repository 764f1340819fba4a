"""The one change path (lock, test, save, audit, check), its journal and crash recovery."""

from bot.change.path import (
    TEST_AUDIT_OUTCOME,
    ChangeOutcome,
    ChangeProgress,
    ChangeStatus,
    PasswordChanges,
    open_changes,
    record_checks,
    sensors_for_account,
)
from bot.change.recovery import Recovery, Verdict

__all__ = [
    "TEST_AUDIT_OUTCOME",
    "ChangeOutcome",
    "ChangeProgress",
    "ChangeStatus",
    "PasswordChanges",
    "Recovery",
    "Verdict",
    "open_changes",
    "record_checks",
    "sensors_for_account",
]
