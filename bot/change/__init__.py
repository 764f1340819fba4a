"""The one change path (lock, test, save, audit, check), its journal and crash recovery."""

from bot.change.outcome import (
    ChangeOutcome,
    ChangeProgress,
    ChangeStatus,
    ConnectionTester,
    Holder,
)
from bot.change.path import PasswordChanges, open_changes, sensors_for_account
from bot.change.records import (
    TEST_AUDIT_OUTCOME,
    detail_of_test,
    record_busy,
    record_checks,
    record_interrupted_test,
    record_test,
)
from bot.change.recovery import Recovery, Verdict

__all__ = [
    "TEST_AUDIT_OUTCOME",
    "ChangeOutcome",
    "ChangeProgress",
    "ChangeStatus",
    "ConnectionTester",
    "Holder",
    "PasswordChanges",
    "Recovery",
    "Verdict",
    "detail_of_test",
    "open_changes",
    "record_busy",
    "record_checks",
    "record_interrupted_test",
    "record_test",
    "sensors_for_account",
]
