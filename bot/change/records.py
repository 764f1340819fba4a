"""Audit rows of the change path's steps, written the same way by every face."""

from __future__ import annotations

from collections.abc import Sequence

from bot.audit import AuditAction, AuditEvent, AuditOutcome, AuditSink, record_or_log
from bot.directory import AccountBusy, ConnectionTestResult, Outcome, Reason
from bot.sensors import SensorResult

TEST_AUDIT_OUTCOME = {
    Outcome.PASSED: AuditOutcome.OK,
    Outcome.REJECTED: AuditOutcome.FAILED,
    Outcome.REFUSED: AuditOutcome.REFUSED,
    Outcome.UNREACHABLE: AuditOutcome.ERROR,
}


def record_checks(
    audit: AuditSink, actor: str, account_id: str | None, results: Sequence[SensorResult]
) -> None:
    """Audit a round of sensor checks: ok when every sensor is healthy."""
    healthy = sum(r.healthy for r in results)
    outcome = AuditOutcome.OK if healthy == len(results) else AuditOutcome.FAILED
    checks = AuditEvent(
        actor=actor,
        action=AuditAction.CHECK,
        account=account_id,
        outcome=outcome,
        detail=f"{healthy} of {len(results)} sensors healthy",
    )
    record_or_log(audit, checks)


def detail_of_test(result: ConnectionTestResult) -> str:
    """A test's audit detail: the DC, the message and the warnings (a pass with a doubt is not recorded
    as a plain pass)."""
    detail = result.message
    if result.dc and result.dc not in detail:
        detail = f"{result.dc}: {detail}"
    return detail + "".join(f" Warning: {warning}" for warning in result.warnings)


def record_test(audit: AuditSink, actor: str, result: ConnectionTestResult) -> None:
    """Audit one connection test, from any face (raises AuditError: a change saves nothing unaudited)."""
    test = AuditEvent(
        actor=actor,
        action=AuditAction.TEST,
        account=result.account_id,
        outcome=TEST_AUDIT_OUTCOME[result.outcome],
        reason=result.reason.value if result.reason else None,
        detail=detail_of_test(result),
    )
    audit.record(test)


def record_busy(audit: AuditSink, actor: str, account_id: str, busy: AccountBusy) -> None:
    """Audit a test or change refused because another one of the account is in flight."""
    refusal = AuditEvent(
        actor=actor,
        action=AuditAction.TEST,
        account=account_id,
        outcome=AuditOutcome.REFUSED,
        reason=Reason.BUSY,
        detail=str(busy),
    )
    record_or_log(audit, refusal)


def record_interrupted_test(audit: AuditSink, actor: str, account_id: str) -> None:
    """A connection test stopped (Ctrl-C) after the guard counted it: one INTERRUPTED row, as a change cut
    short while testing gets (bot.change.recovery), so the guard's pending attempts match the trail."""
    stopped = AuditEvent(
        actor=actor,
        action=AuditAction.INTERRUPTED,
        account=account_id,
        outcome=AuditOutcome.ERROR,
        reason="not-saved",
        detail=f"the connection test by {actor} was interrupted while testing; a test saves nothing, and "
        "the lockout guard counts it as a rejection until its window passes",
    )
    record_or_log(audit, stopped)
