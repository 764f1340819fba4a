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
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path

from pydantic import SecretStr

from bot.audit import (
    AuditAction,
    AuditError,
    AuditEvent,
    AuditOutcome,
    AuditTrail,
    open_audit,
    record_or_log,
)
from bot.change.aftermath import Attempt, went_wrong
from bot.change.baseline import STALE, Baseline, changed_since, record_stale, take_baseline
from bot.change.failures import report_failure
from bot.change.journal import ChangeJournal, InFlight, Phase
from bot.change.outcome import (
    ChangeOutcome,
    ChangeProgress,
    ChangeStatus,
    ConnectionTester,
    Holder,
)
from bot.change.portal import after_recovery, open_step, portal_steps
from bot.change.records import record_busy, record_checks, record_test
from bot.change.recovery import Recovery, resolve_checks_stopped, resolve_leftovers, resolve_stopped
from bot.config import AccountConfig, SensorConfig, Settings, password_refusal
from bot.directory import (
    AccountBusy,
    AccountLease,
    AccountLocks,
    ConnectionTestResult,
    LockoutGuard,
    run_connection_test,
)
from bot.fleet import AccountSensors, GraphFleet, account_sensors, graph_unread
from bot.infra import metrics
from bot.infra.logging_setup import TOLD
from bot.infra.redaction import active_secret
from bot.infra.state_dir import state_dir
from bot.sensors import ScriptRunner, SensorChecker, SensorResult, ThreadScripts, check_sensors
from bot.store import CredentialStore, StoreError, open_store

log = logging.getLogger(__name__)


# One step under the account's lock, with its journal entry: test then save, or save a held password.
Step = Callable[[AccountLease, InFlight, Attempt], ChangeOutcome]


def open_changes(
    settings: Settings, checker: SensorChecker = check_sensors, scripts: ScriptRunner | None = None
) -> PasswordChanges:
    """The change path for a configuration, with its store, audit trail and account locks (raises
    StoreError/AuditError); `checker` checks the sensors and `scripts` runs the other scripts on them
    (`atp-bot run`: both its worker processes)."""
    return PasswordChanges(
        settings,
        state_dir=state_dir(settings),
        store=open_store(settings),
        audit=open_audit(settings),
        checker=checker,
        scripts=scripts or ThreadScripts(settings.sensor_checks.pool_size),
    )


def sensors_for_account(settings: Settings, account_id: str) -> list[SensorConfig]:
    """The sensors that use this account; a sensor that names no account is checked for every account."""
    return [s for s in settings.sensors if s.account in (account_id, None)]


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
        scripts: ScriptRunner | None = None,
        tester: ConnectionTester = run_connection_test,
    ) -> None:
        self.settings = settings
        self.state_dir = state_dir
        self.store = store
        self.audit = audit
        self.guard = LockoutGuard.for_settings(settings)
        # Every test and change of an account holds its lock, shared with the replicas when there are any.
        self.locks = AccountLocks.for_settings(settings, state_dir)
        self.journal = ChangeJournal(state_dir)
        self.checker = checker
        self.scripts = scripts or ThreadScripts(settings.sensor_checks.pool_size)
        self.tester = tester
        self.fleet = GraphFleet(settings)
        self.portal = portal_steps(settings, state_dir)  # None: the store is one the sensors read

    def sensor_scope(self, account_id: str, progress: ChangeProgress | None = None) -> AccountSensors:
        """The sensors a change of the account concerns: `[[sensors]]` and, with discovery, Graph's (when
        Graph cannot be read, `progress` is told and the `[[sensors]]` are the scope)."""
        graph, graph_error = self.fleet.sensors()
        if graph_error is not None and progress is not None:
            progress.graph_unread(graph_unread(graph_error))
        return account_sensors(self.settings, account_id, graph)

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
        checks_next: bool = False,
    ) -> ChangeOutcome:
        """Test, then save only if the test passed (or, with `hold`, keep it for an approval). Never
        raises for peer or store problems. `checks_next`: the caller runs `follow_up_checks` next, and
        the saved change stays in the journal until they end (a crash in them is not silent either).

        `origin` is kept in the change journal while the change is in flight (never a secret): what the
        face needs to tell the person if a crash cuts the change short (Slack: user and channel). `note`
        is added to the save's audit row (a break-glass change and its reason)."""
        progress = progress or ChangeProgress()
        account = self.settings.account(account_id)
        refusal = password_refusal(account)
        if refusal:
            return ChangeOutcome(account.id, ChangeStatus.NOT_STARTED, refusal)

        def test_and_save(lease: AccountLease, entry: InFlight, attempt: Attempt) -> ChangeOutcome:
            progress.testing(account)
            started = time.monotonic()
            result = self.tester(account, password, guard=self.guard, lease=lease)
            attempt.test = result
            metrics.CONNECTION_TEST_SECONDS.observe(time.monotonic() - started)
            metrics.CONNECTION_TESTS.labels(result.outcome, result.reason or "none").inc()
            progress.tested(result)
            return self._after_test(account, password, actor, result, entry, attempt, hold, note)

        return self._run(account, password, actor, progress, origin, test_and_save, checks_next)

    def save_tested(
        self,
        account_id: str,
        password: SecretStr,
        actor: str,
        test: ConnectionTestResult,
        *,
        baseline: Baseline | None,
        note: str,
        still_allowed: Callable[[], str | None],
        origin: Mapping[str, str] | None = None,
    ) -> ChangeOutcome:
        """Save a held password that passed its test (approved since) as `change` saves: journal, store,
        audit. Not tested again: a second bind would spend the lockout guard's allowance for nothing.
        Refused as stale (audited, nothing saved) when `still_allowed` says why the requester may no
        longer make the change, or when the account moved since the test (bot.change.baseline)."""
        account, lookups = self.settings.account(account_id), self.guard.lookups

        def save(lease: AccountLease, entry: InFlight, attempt: Attempt) -> ChangeOutcome:
            attempt.test = test
            why = still_allowed() or changed_since(account, self.store, self.audit, baseline, lookups)
            if why:
                record_stale(self.audit, actor, account.id, note, why)
                stale = f"Refused as stale: {why}. Nothing was saved."
                status = ChangeStatus.NOT_STARTED
                return ChangeOutcome(account.id, status, stale, test=test, error_reason=STALE)
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
        checks_next: bool = False,
    ) -> ChangeOutcome:
        attempt = Attempt()
        with active_secret(password):
            try:
                outcome = self._locked_change(account, actor, progress, origin, attempt, step, checks_next)
            except Exception as exc:  # noqa: BLE001 - told, logged with its traceback and audited
                outcome = went_wrong(self.store, self.audit, account, actor, attempt, exc)
            metrics.PASSWORD_CHANGES.labels(outcome.status).inc()
            progress.finished(outcome)
        return outcome

    def _locked_change(
        self,
        account: AccountConfig,
        actor: str,
        progress: ChangeProgress,
        origin: Mapping[str, str] | None,
        attempt: Attempt,
        step: Step,
        checks_next: bool,
    ) -> ChangeOutcome:
        try:
            with self.locks.hold(account.id) as lease:
                for recovery in resolve_leftovers(self.journal, self.store, self.audit, account.id):
                    progress.recovered(after_recovery(self.portal, recovery))
                try:
                    entry = self.journal.begin(account.id, actor, self.store.backend, origin)
                except OSError as exc:
                    log.error("account %s: cannot write the change journal: %s", account.id, exc, extra=TOLD)
                    return ChangeOutcome(
                        account.id,
                        ChangeStatus.NOT_STARTED,
                        f"Not started: the change journal in {self.journal.path} cannot be written "
                        f"({exc.strerror}).",
                    )
                try:
                    outcome = step(lease, entry, attempt)
                except Exception:
                    self.journal.end(entry)
                    raise
                except BaseException:  # Ctrl-C: audited now as interrupted, as the next start would
                    resolve_stopped(self.journal, self.store, self.audit, entry)
                    raise
                self.journal.hand_over(entry, to_checks=checks_next and outcome.saved_ok)
                return outcome
        except AccountBusy as busy:
            record_busy(self.audit, actor, account.id, busy)
            return ChangeOutcome(account.id, ChangeStatus.NOT_STARTED, str(busy))

    def recover_interrupted(self) -> list[Recovery]:
        """At start: resolve and audit every change a crash cut short (an account whose lock is held has
        its change still running elsewhere, and is left alone). The faces tell the people concerned."""
        started = time.monotonic()
        recoveries: list[Recovery] = []
        for account_id in sorted({entry.account_id for entry in self.journal.entries()}):
            try:
                with self.locks.hold(account_id):
                    leftovers = resolve_leftovers(self.journal, self.store, self.audit, account_id)
                    recoveries.extend(after_recovery(self.portal, recovery) for recovery in leftovers)
            except AccountBusy:
                log.info("account %s: a change is in flight in another process; not resolved", account_id)
        if recoveries:
            log.info(
                "resolved %d interrupted change(s) in %.3f s", len(recoveries), time.monotonic() - started
            )
        return recoveries

    def _after_test(
        self,
        account: AccountConfig,
        password: SecretStr,
        actor: str,
        result: ConnectionTestResult,
        entry: InFlight,
        attempt: Attempt,
        hold: Holder | None,
        note: str | None,
    ) -> ChangeOutcome:
        try:
            record_test(self.audit, actor, result)
        except AuditError as exc:
            log.error("account %s: audit trail unavailable, nothing saved: %s", account.id, exc, extra=TOLD)
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
            return hold(result, password, take_baseline(account, self.audit, self.guard.lookups))
        return self._save(account, password, actor, result, entry, attempt, note)

    def _save(
        self,
        account: AccountConfig,
        password: SecretStr,
        actor: str,
        result: ConnectionTestResult,
        entry: InFlight,
        attempt: Attempt,
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
        save = AuditEvent(
            actor=actor, action=AuditAction.SAVE, account=account.id, outcome=AuditOutcome.OK, detail=detail
        )
        record_or_log(self.audit, save)
        log.info("account %s: new password saved (%s store) by %s", account.id, saved.backend, actor)
        return ChangeOutcome(
            account.id,
            ChangeStatus.SAVED,
            f"Saved. {result.message}",
            test=result,
            saved=saved,
            changed_at=saved.saved_at,
            portal_pending=open_step(self.portal, account.id, actor, saved.saved_at),
        )

    def _not_saved(
        self, account: AccountConfig, actor: str, result: ConnectionTestResult, exc: StoreError
    ) -> ChangeOutcome:
        failed_save = AuditEvent(
            actor=actor,
            action=AuditAction.SAVE,
            account=account.id,
            outcome=AuditOutcome.ERROR,
            reason=exc.reason,
            detail=exc.message,
        )
        record_or_log(self.audit, failed_save)
        log.error("account %s: tested OK but NOT saved: %s", account.id, exc.message, extra=TOLD)
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
        """Check every sensor of the account: service running, credential errors since `since`. Ends the
        journal entry of this process's change of the account (`checks_next`); Ctrl-C audits it at once."""
        try:
            results = self._check_account(account_id, since, actor, progress or ChangeProgress())
        except Exception:
            self.journal.end_checks(account_id)
            raise
        except BaseException:
            resolve_checks_stopped(self.journal, self.store, self.audit, account_id)
            raise
        self.journal.end_checks(account_id)
        return results

    def _check_account(
        self, account_id: str, since: datetime | None, actor: str, progress: ChangeProgress
    ) -> list[SensorResult]:
        scope = self.sensor_scope(account_id, progress)
        if scope.not_using_dsa:
            progress.not_using_dsa(scope.not_using_dsa)
        if not scope.names:
            progress.checks_done([])
            return []
        try:
            results = self.checker(
                scope.settings,
                list(scope.names),
                since=since or datetime.now(UTC),
                on_result=progress.sensor_checked,
            )
        except Exception as exc:  # shown (or passed on), logged and audited
            doing = f"account {account_id}: the follow-up checks"
            if not progress.checks_failed(
                report_failure(self.audit, actor, AuditAction.CHECK, account_id, exc, doing=doing)
            ):
                raise
            return []
        # A host that shows the unified sensor (Graph off) is shown, but does not count in the verdict.
        counted = [r for r in results if r.generation != "3"]
        record_checks(self.audit, actor, account_id, counted)
        progress.checks_done(results)
        return counted
