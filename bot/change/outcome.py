"""What a change is and how it went: its outcome, the callbacks a face overrides to show each step,
and the two peers the change path drives (the connection tester and the sensor checker), as protocols."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from pydantic import SecretStr

from bot.change.baseline import Baseline
from bot.change.recovery import Recovery
from bot.config import AccountConfig
from bot.directory import AccountLease, ConnectionTestResult, LockoutGuard
from bot.sensors import SensorResult
from bot.store import CredentialMetadata


class ChangeStatus(StrEnum):
    SAVED = "saved"
    TEST_FAILED = "test-failed"  # not saved: the password did not pass the connection test
    SAVE_FAILED = "save-failed"  # tested OK but NOT saved: the store failed
    HELD = "held"  # tested OK, not saved: waiting for a second person's approval (bot.change.approvals)
    NOT_STARTED = "not-started"  # another change of the account is in flight, or the audit is down
    FAILED = "failed"  # something unexpected stopped it before a save; `message` says what became of it


@dataclass(frozen=True)
class ChangeOutcome:
    account_id: str
    status: ChangeStatus
    message: str
    test: ConnectionTestResult | None = None
    saved: CredentialMetadata | None = None
    changed_at: datetime | None = None
    error_reason: str | None = (
        None  # why the store failed (StoreError.reason), or bot.change.failures' reason
    )
    problem: str | None = None  # what went wrong unexpectedly (one safe line), even after a save
    portal_pending: bool = False  # saved, and waiting for the portal step (bot.change.portal)

    @property
    def saved_ok(self) -> bool:
        return self.status is ChangeStatus.SAVED


class ChangeProgress:
    """Callbacks for each step of a change; the faces (Slack, CLI) override what they show."""

    def recovered(self, recovery: Recovery) -> None:
        """An earlier change of the account, cut short by a crash, was found and resolved first."""

    def testing(self, account: AccountConfig) -> None:
        """The connection test starts."""

    def tested(self, result: ConnectionTestResult) -> None:
        """The connection test ended (passed or not)."""

    def finished(self, outcome: ChangeOutcome) -> None:
        """The change ended: saved, or why not."""

    def sensor_checked(self, result: SensorResult) -> None:
        """One sensor answered the follow-up check."""

    def checks_done(self, results: Sequence[SensorResult]) -> None:
        """Every sensor of the account answered (or failed)."""

    def checks_failed(self, problem: str) -> bool:
        """The checks could not run at all (`problem`: one safe line, already logged and audited). Faces
        show it and return True; by default nothing is shown, so the exception goes on to the caller
        (the monitor's re-check job, which reports a configuration problem as a skipped re-check)."""
        return False

    def not_using_dsa(self, names: Sequence[str]) -> None:
        """Unified sensors (per Graph) of the account's domains: not checked, they do not use the account."""

    def graph_unread(self, line: str) -> None:
        """Graph's sensor list could not be read (`line` says why, safe to show): only the configured
        sensors are checked."""


class Holder(Protocol):
    """Keeps a password that passed its test for a later decision instead of saving it now (two-person
    approval). Called with the account's lock held; `baseline` is the account at that moment, for the
    stale check of `save_tested`."""

    def __call__(
        self, test: ConnectionTestResult, password: SecretStr, baseline: Baseline
    ) -> ChangeOutcome: ...


class ConnectionTester(Protocol):
    """Tests a password against AD under the account's lease (`run_connection_test`)."""

    def __call__(
        self, account: AccountConfig, password: SecretStr, *, guard: LockoutGuard, lease: AccountLease
    ) -> ConnectionTestResult: ...
