"""The drift job: each account's password state in AD, read with its lookup account (never a bind as
the account), alerted once per event and followed by a recovery message once it is in sync again.
"""

from __future__ import annotations

import logging

from bot.audit import AuditAction, AuditOutcome
from bot.config import AccountConfig, ConfigError
from bot.monitor.context import MonitorContext
from bot.monitor.delivery import DRIFT, flush_outbox
from bot.monitor.drift import DriftReport, check_drift
from bot.monitor.lookup_watch import queue_lookup_suspensions
from bot.monitor.memory import MonitorMemory
from bot.monitor.models import DriftNotice
from bot.store import StoreError

log = logging.getLogger(__name__)


def _read(ctx: MonitorContext, account: AccountConfig) -> DriftReport | None:
    """The account's drift report; None when it cannot be judged this time (nothing changes then)."""
    try:
        saved = ctx.changes.store.metadata(account.id)
    except StoreError as exc:
        log.warning("account %s: drift not checked: the store cannot be read: %s", account.id, exc.message)
        return None
    try:
        report = check_drift(account, saved, ctx.clock(), guard=ctx.changes.guard)
    except ConfigError as exc:
        log.error("account %s: drift not checked: %s", account.id, "; ".join(exc.problems))
        return None
    if report.unreachable:
        log.warning("account %s: drift not checked: %s", account.id, "; ".join(report.findings))
        return None
    return report


def _notice(ctx: MonitorContext, account_id: str, report: DriftReport) -> DriftNotice | None:
    """What to send for this reading, given the events already alerted (and remember the new set)."""
    alerted = ctx.memory.drift_events(account_id)
    current = set(report.events)
    new = [report.events[key] for key in report.events if key not in alerted]
    if new:
        notice = DriftNotice(account_id=account_id, findings=tuple(new))
    elif alerted and not current:
        notice = DriftNotice(account_id=account_id, findings=("Nothing left to report.",), recovered=True)
    else:
        notice = None
    with ctx.memory.transaction() as db:
        MonitorMemory.save_drift_events(db, account_id, current)
        if notice is not None:
            MonitorMemory.enqueue(db, DRIFT, notice.model_dump_json())
    return notice


def run_drift_check(ctx: MonitorContext) -> list[DriftNotice]:
    """Read every account that has a lookup account; queue and send the drift alerts and recoveries."""
    notices = []
    for account in ctx.settings.accounts:
        if account.lookup_username is None:
            continue
        report = _read(ctx, account)
        if report is None:
            continue
        notice = _notice(ctx, account.id, report)
        if notice is None:
            continue
        outcome = AuditOutcome.OK if notice.recovered else AuditOutcome.FAILED
        ctx.audit(AuditAction.ALERT, account.id, outcome, "password_drift", " ".join(notice.findings))
        notices.append(notice)
    queue_lookup_suspensions(ctx)
    flush_outbox(ctx.notifier, ctx.memory)
    return notices
