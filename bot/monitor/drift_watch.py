"""The drift job: each account's password state in AD, read with its lookup account (never a bind as
the account), alerted once per event and followed by a recovery message once it is in sync again.
"""

from __future__ import annotations

import logging

from bot.audit import AuditAction, AuditOutcome
from bot.config import AccountConfig, ConfigError
from bot.monitor.context import MonitorRuntime
from bot.monitor.delivery import DRIFT, flush_outbox
from bot.monitor.drift import DriftReport, check_drift
from bot.monitor.memory import MonitorState
from bot.monitor.models import DriftNotice
from bot.store import StoreError

log = logging.getLogger(__name__)


def _read(rt: MonitorRuntime, account: AccountConfig) -> DriftReport | None:
    """The account's drift report; None when it cannot be judged this time (nothing changes then)."""
    try:
        saved = rt.changes.store.metadata(account.id)
    except StoreError as exc:
        log.warning("account %s: drift not checked: the store cannot be read: %s", account.id, exc.message)
        return None
    try:
        report = check_drift(account, saved, rt.clock())
    except ConfigError as exc:
        log.error("account %s: drift not checked: %s", account.id, "; ".join(exc.problems))
        return None
    if report.unreachable:
        log.warning("account %s: drift not checked: %s", account.id, "; ".join(report.findings))
        return None
    return report


def _notice(rt: MonitorRuntime, account_id: str, report: DriftReport) -> DriftNotice | None:
    """What to send for this reading, given the events already alerted (and remember the new set)."""
    alerted = rt.state.drift_events(account_id)
    current = set(report.events)
    new = [report.events[key] for key in report.events if key not in alerted]
    if new:
        notice = DriftNotice(account_id=account_id, findings=tuple(new))
    elif alerted and not current:
        notice = DriftNotice(account_id=account_id, findings=("Nothing left to report.",), recovered=True)
    else:
        notice = None
    with rt.state.transaction() as db:
        MonitorState.save_drift_events(db, account_id, current)
        if notice is not None:
            MonitorState.enqueue(db, DRIFT, notice.model_dump_json())
    return notice


def run_drift_check(rt: MonitorRuntime) -> list[DriftNotice]:
    """Read every account that has a lookup account; queue and send the drift alerts and recoveries."""
    notices = []
    for account in rt.settings.accounts:
        if account.lookup_username is None:
            continue
        report = _read(rt, account)
        if report is None:
            continue
        notice = _notice(rt, account.id, report)
        if notice is None:
            continue
        outcome = AuditOutcome.OK if notice.recovered else AuditOutcome.FAILED
        rt.audit(AuditAction.ALERT, account.id, outcome, "password_drift", " ".join(notice.findings))
        notices.append(notice)
    flush_outbox(rt.notifier, rt.state)
    return notices
