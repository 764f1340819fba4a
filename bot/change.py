"""The one code path for changing a directory service account's password.

lock → connection test → save → audit → follow-up sensor checks. Slack and the CLI are thin faces over
it: they pass a `ChangeProgress` whose methods they override to show each step. A credential that did not
pass the test is never saved, and nothing here knows about Slack.

Every change is written to the change journal while it is in flight, so a change that a crash cut short
is found, resolved and audited at the next start (`recover_interrupted`) or before the account's next
change, never left silent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from pydantic import SecretStr

from bot import metrics
from bot.ad_errors import Reason
from bot.audit import AuditAction, AuditError, AuditOutcome, AuditSink, AuditTrail, open_audit, record_or_log
from bot.change_journal import ChangeJournal, InFlight, Phase
from bot.config import AccountConfig, SensorConfig, Settings
from bot.directory import ConnectionTestResult, Outcome, run_connection_test
from bot.failures import failure_reason, one_line, report_failure
from bot.lockout import AccountBusy, AccountLease, LockoutGuard, hold_account
from bot.recovery import Recovery, Verdict, resolve, verdict
from bot.redaction import active_secret
from bot.sensors import SensorResult, check_sensors
from bot.state import state_dir
from bot.store import CredentialMetadata, CredentialStore, StoreError, open_store

log = logging.getLogger(__name__)

TEST_AUDIT_OUTCOME = {
    Outcome.PASSED: AuditOutcome.OK,
    Outcome.REJECTED: AuditOutcome.FAILED,
    Outcome.REFUSED: AuditOutcome.REFUSED,
    Outcome.UNREACHABLE: AuditOutcome.ERROR,
}


class ChangeStatus(StrEnum):
    SAVED = "saved"
    TEST_FAILED = "test-failed"  # not saved: the password did not pass the connection test
    SAVE_FAILED = "save-failed"  # tested OK but NOT saved: the store failed
    NOT_STARTED = "not-started"  # another change of the account is in flight, or the audit is down
    HELD = "held"  # tested OK, not saved: waiting for a second person's approval (bot.approvals)
    FAILED = "failed"  # something unexpected stopped it before a save; `message` says what became of it


@dataclass(frozen=True)
class ChangeOutcome:
    account_id: str
    status: ChangeStatus
    message: str
    test: ConnectionTestResult | None = None
    saved: CredentialMetadata | None = None
    changed_at: datetime | None = None
    error_reason: str | None = None  # why the store failed (StoreError.reason), or bot.failures' reason
    problem: str | None = None  # what went wrong unexpectedly (one safe line), even after a save

    @property
    def saved_ok(self) -> bool:
        return self.status is ChangeStatus.SAVED


class Holder(Protocol):
    """Keeps a password that passed its test for a later decision instead of saving it now (two-person
    approval). Called with the account's lock held; `last_save` is the audit id of the account's latest
    save at that moment, for the stale check of `save_tested`."""

    def __call__(
        self, test: ConnectionTestResult, password: SecretStr, last_save: int | None
    ) -> ChangeOutcome: ...


Step = Callable[[AccountLease, InFlight, "_Attempt"], ChangeOutcome]


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


@dataclass
class _Attempt:
    """How far a change got, so that an unexpected failure is told truthfully (saved or not)."""

    test: ConnectionTestResult | None = None
    saving: InFlight | None = None  # the journal entry once the store was called
    saved: CredentialMetadata | None = None


def open_changes(settings: Settings) -> PasswordChanges:
    """The change path for a configuration, with its store and audit trail (raises StoreError/AuditError)."""
    return PasswordChanges(
        settings, state_dir=state_dir(settings), store=open_store(settings), audit=open_audit(settings)
    )


def record_checks(
    audit: AuditSink, actor: str, account_id: str | None, results: Sequence[SensorResult]
) -> None:
    """Audit a round of sensor checks: ok when every sensor is healthy."""
    healthy = sum(r.healthy for r in results)
    outcome = AuditOutcome.OK if healthy == len(results) else AuditOutcome.FAILED
    record_or_log(
        audit,
        actor,
        AuditAction.CHECK,
        account_id,
        outcome,
        None,
        f"{healthy} of {len(results)} sensors healthy",
    )


def record_test(audit: AuditSink, actor: str, result: ConnectionTestResult) -> None:
    """Audit one connection test, from any face (raises AuditError: a change saves nothing unaudited)."""
    detail = result.message
    if result.dc and result.dc not in detail:
        detail = f"{result.dc}: {detail}"
    audit.record(
        actor,
        AuditAction.TEST,
        result.account_id,
        TEST_AUDIT_OUTCOME[result.outcome],
        result.reason.value if result.reason else None,
        detail,
    )


def record_busy(audit: AuditSink, actor: str, account_id: str, busy: AccountBusy) -> None:
    """Audit a test or change refused because another one of the account is in flight."""
    record_or_log(audit, actor, AuditAction.TEST, account_id, AuditOutcome.REFUSED, Reason.BUSY, str(busy))


def sensors_for_account(settings: Settings, account_id: str) -> list[SensorConfig]:
    """The sensors that use this account; a sensor that names no account is checked for every account."""
    return [s for s in settings.sensors if s.account in (account_id, None)]


SensorChecker = Callable[..., list[SensorResult]]
ConnectionTester = Callable[..., ConnectionTestResult]


class PasswordChanges:
    """Changes passwords for the accounts of one configuration."""

    def __init__(
        self,
        settings: Settings,
        *,
        state_dir: Path,
        store: CredentialStore,
        audit: AuditTrail,
        checker: SensorChecker = check_sensors,
        tester: ConnectionTester = run_connection_test,
    ) -> None:
        self.settings = settings
        self.state_dir = state_dir
        self.store = store
        self.audit = audit
        self.guard = LockoutGuard.for_settings(settings)
        self.journal = ChangeJournal(state_dir)
        self.checker = checker
        self.tester = tester

    def change(
        self,
        account_id: str,
        password: SecretStr,
        actor: str,
        progress: ChangeProgress | None = None,
        origin: Mapping[str, str] | None = None,
        *,
        hold: Holder | None = None,
        note: str | None = None,
    ) -> ChangeOutcome:
        """Test, then save only if the test passed (or, with `hold`, keep it for an approval). Never
        raises for peer or store problems.

        `origin` is kept in the change journal while the change is in flight (never a secret): what the
        face needs to tell the person if a crash cuts the change short (Slack: user and channel). `note`
        is added to the save's audit row (a break-glass change and its reason)."""
        progress = progress or ChangeProgress()
        account = self.settings.account(account_id)

        def test_and_save(lease: AccountLease, entry: InFlight, attempt: _Attempt) -> ChangeOutcome:
            progress.testing(account)
            started = time.monotonic()
            result = self.tester(account, password, guard=self.guard, lease=lease)
            attempt.test = result
            metrics.CONNECTION_TEST_SECONDS.observe(time.monotonic() - started)
            metrics.CONNECTION_TESTS.labels(result.outcome, result.reason or "none").inc()
            progress.tested(result)
            return self._after_test(account, password, actor, result, entry, attempt, hold, note)

        return self._run(account, password, actor, progress, origin, test_and_save)

    def save_tested(
        self,
        account_id: str,
        password: SecretStr,
        actor: str,
        test: ConnectionTestResult,
        *,
        last_save: int | None,
        note: str,
        origin: Mapping[str, str] | None = None,
    ) -> ChangeOutcome:
        """Save a password that passed its test earlier and was held (approved since), as `change` saves:
        journal, store, audit. Not tested again: the test already passed, and a second bind would spend
        the lockout guard's allowance for nothing. Refused when another password was saved for the account
        since the test (`last_save`: the audit trail's, which every replica and the CLI write), so an old
        approval never overwrites a newer change."""
        account = self.settings.account(account_id)

        def save(lease: AccountLease, entry: InFlight, attempt: _Attempt) -> ChangeOutcome:
            attempt.test = test
            if self.audit.last_save(account.id) != last_save:
                return ChangeOutcome(
                    account.id,
                    ChangeStatus.NOT_STARTED,
                    "Not saved: a newer password was saved meanwhile.",
                    test=test,
                    error_reason="stale",
                )
            return self._save(account, password, actor, test, entry, attempt, note)

        return self._run(account, password, actor, ChangeProgress(), origin, save)

    def _run(
        self,
        account: AccountConfig,
        password: SecretStr,
        actor: str,
        progress: ChangeProgress,
        origin: Mapping[str, str] | None,
        step: Step,
    ) -> ChangeOutcome:
        attempt = _Attempt()
        with active_secret(password):
            try:
                outcome = self._locked_change(account, actor, progress, origin, attempt, step)
            except Exception as exc:  # noqa: BLE001 - told, logged with its traceback and audited
                outcome = self._went_wrong(account, actor, attempt, exc)
            metrics.PASSWORD_CHANGES.labels(outcome.status).inc()
            progress.finished(outcome)
        return outcome

    def _locked_change(
        self,
        account: AccountConfig,
        actor: str,
        progress: ChangeProgress,
        origin: Mapping[str, str] | None,
        attempt: _Attempt,
        step: Step,
    ) -> ChangeOutcome:
        try:
            with hold_account(self.state_dir, account.id) as lease:
                for recovery in self._recover(account.id):
                    progress.recovered(recovery)
                try:
                    entry = self.journal.begin(account.id, actor, self.store.backend, origin)
                except OSError as exc:
                    log.error("account %s: cannot write the change journal: %s", account.id, exc)
                    return ChangeOutcome(
                        account.id,
                        ChangeStatus.NOT_STARTED,
                        f"Not started: the change journal in {self.journal.path} cannot be written "
                        f"({exc.strerror}).",
                    )
                try:
                    return step(lease, entry, attempt)
                finally:
                    self._finish(entry)
        except AccountBusy as busy:
            record_busy(self.audit, actor, account.id, busy)
            return ChangeOutcome(account.id, ChangeStatus.NOT_STARTED, str(busy))

    def _went_wrong(
        self, account: AccountConfig, actor: str, attempt: _Attempt, exc: Exception
    ) -> ChangeOutcome:
        """Something unforeseen stopped the change: tell what became of the password, truthfully."""
        saved = attempt.saved
        unconfirmed = False
        if saved is None and attempt.saving is not None:
            saved, unconfirmed = self._save_landed(attempt.saving)
        if saved is not None:
            aftermath = f"the new password was saved in the {saved.backend} store"
        elif unconfirmed:
            aftermath = f"the {self.store.backend} store did not confirm the save"
        else:
            aftermath = "nothing was saved"
        line = report_failure(
            self.audit,
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
                f"Something went wrong while the {self.store.backend} store was saving: {line}. The store "
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

    def _save_landed(self, entry: InFlight) -> tuple[CredentialMetadata | None, bool]:
        """After the store failed unexpectedly mid-save: (the metadata if the save landed, whether that
        cannot be known), decided as for a change cut short by a crash."""
        try:
            metadata = self.store.metadata(entry.account_id)
        except Exception as exc:  # noqa: BLE001 - then the save is unconfirmed, which is what is said
            log.error("account %s: cannot read the store's metadata: %s", entry.account_id, one_line(exc))
            return None, True
        decided = verdict(entry, metadata)
        return (metadata if decided is Verdict.SAVED else None), decided is Verdict.UNCONFIRMED

    def _finish(self, entry: InFlight) -> None:
        try:
            self.journal.finish(entry)
        except OSError as exc:  # resolved at the next start, as if the process had died here
            log.error("account %s: cannot clear the change journal entry: %s", entry.account_id, exc)

    def recover_interrupted(self) -> list[Recovery]:
        """At start: resolve and audit every change a crash cut short (an account whose lock is held has
        its change still running elsewhere, and is left alone). The faces tell the people concerned."""
        started = time.monotonic()
        recoveries: list[Recovery] = []
        for account_id in sorted({entry.account_id for entry in self.journal.entries()}):
            try:
                with hold_account(self.state_dir, account_id):
                    recoveries.extend(self._recover(account_id))
            except AccountBusy:
                log.info("account %s: a change is in flight in another process; not resolved", account_id)
        if recoveries:
            log.info(
                "resolved %d interrupted change(s) in %.3f s", len(recoveries), time.monotonic() - started
            )
        return recoveries

    def _recover(self, account_id: str) -> list[Recovery]:
        """Resolve the account's leftover journal entries; the caller holds the account's lock, so no
        change of the account is running and every entry found is one that a crash cut short."""
        self.journal.remove_stray_temporary(account_id)
        recoveries = []
        for entry in self.journal.entries(account_id):
            try:
                recovery = resolve(entry, self.store, self.audit, datetime.now(UTC))
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
            self._finish(entry)
            recoveries.append(recovery)
        return recoveries

    def _after_test(
        self,
        account: AccountConfig,
        password: SecretStr,
        actor: str,
        result: ConnectionTestResult,
        entry: InFlight,
        attempt: _Attempt,
        hold: Holder | None,
        note: str | None,
    ) -> ChangeOutcome:
        try:
            record_test(self.audit, actor, result)
        except AuditError as exc:
            log.error("account %s: audit trail unavailable, nothing saved: %s", account.id, exc)
            return ChangeOutcome(
                account.id,
                ChangeStatus.NOT_STARTED,
                f"Not saved: the audit trail cannot be written ({exc}). Fix the audit trail first.",
                test=result,
            )
        if not result.passed:
            return ChangeOutcome(
                account.id, ChangeStatus.TEST_FAILED, f"Not saved: {result.message}", test=result
            )
        if hold is not None:
            return hold(result, password, self.audit.last_save(account.id))
        return self._save(account, password, actor, result, entry, attempt, note)

    def _save(
        self,
        account: AccountConfig,
        password: SecretStr,
        actor: str,
        result: ConnectionTestResult,
        entry: InFlight,
        attempt: _Attempt,
        note: str | None,
    ) -> ChangeOutcome:
        """Save a tested password: journal first (a crash mid-save is found at the next start), then the
        store, then the audit row."""
        try:
            attempt.saving = self.journal.advance(entry, Phase.SAVING)
        except OSError as exc:  # saving now could leave an interrupted save undetectable
            problem = StoreError(f"the change journal cannot be written ({exc.strerror})", reason="io")
            return self._not_saved(account, actor, result, problem)
        try:
            saved = attempt.saved = self.store.save(account.id, password, actor)
        except StoreError as exc:
            return self._not_saved(account, actor, result, exc)
        detail = f"{saved.backend} store; verified by {result.dc}" + (f"; {note}" if note else "")
        record_or_log(self.audit, actor, AuditAction.SAVE, account.id, AuditOutcome.OK, None, detail)
        log.info("account %s: new password saved (%s store) by %s", account.id, saved.backend, actor)
        return ChangeOutcome(
            account.id,
            ChangeStatus.SAVED,
            f"Saved. {result.message}",
            test=result,
            saved=saved,
            changed_at=saved.saved_at,
        )

    def _not_saved(
        self, account: AccountConfig, actor: str, result: ConnectionTestResult, exc: StoreError
    ) -> ChangeOutcome:
        record_or_log(
            self.audit, actor, AuditAction.SAVE, account.id, AuditOutcome.ERROR, exc.reason, exc.message
        )
        log.error("account %s: tested OK but NOT saved: %s", account.id, exc.message)
        return ChangeOutcome(
            account.id,
            ChangeStatus.SAVE_FAILED,
            f"Tested OK but NOT saved: {exc.message}",
            test=result,
            error_reason=exc.reason,
        )

    def follow_up_checks(
        self, account_id: str, since: datetime | None, actor: str, progress: ChangeProgress | None = None
    ) -> list[SensorResult]:
        """Check every sensor of the account: service running, credential errors since `since`."""
        progress = progress or ChangeProgress()
        names = [s.name for s in sensors_for_account(self.settings, account_id)]
        if not names:
            progress.checks_done([])
            return []
        try:
            results = self.checker(
                self.settings, names, since=since or datetime.now(UTC), on_result=progress.sensor_checked
            )
        except Exception as exc:  # shown (or passed on), logged and audited
            doing = f"account {account_id}: the follow-up checks"
            if not progress.checks_failed(
                report_failure(self.audit, actor, AuditAction.CHECK, account_id, exc, doing=doing)
            ):
                raise
            return []
        record_checks(self.audit, actor, account_id, results)
        progress.checks_done(results)
        return results
