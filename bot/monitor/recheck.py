"""Re-checks after a change: the follow-up checks again, later, reported in the thread of the change."""

from __future__ import annotations

import logging
from datetime import datetime

from bot.monitor.context import MonitorContext
from bot.monitor.delivery import RECHECK, flush_outbox
from bot.monitor.memory import MonitorMemory
from bot.monitor.models import MessageRef, RecheckReport, SensorSummary

log = logging.getLogger(__name__)


def run_recheck(
    ctx: MonitorContext, account_id: str, thread: MessageRef, changed_at: datetime, delay_minutes: int
) -> RecheckReport:
    """Check the account's sensors for credential errors since the change; queue and send the report."""
    results = ctx.changes.follow_up_checks(account_id, changed_at, ctx.actor)
    report = RecheckReport(
        account_id=account_id,
        changed_at=changed_at,
        delay_minutes=delay_minutes,
        checked_at=ctx.clock(),
        sensors=tuple(SensorSummary.of(r) for r in results),
    )
    with ctx.memory.transaction() as db:
        MonitorMemory.enqueue(db, RECHECK, report.model_dump_json(), thread)
    log.info(
        "account %s: re-check %d min after the change: %s",
        account_id,
        delay_minutes,
        "healthy" if report.healthy else "needs attention",
    )
    flush_outbox(ctx.notifier, ctx.memory)
    return report
