"""Telling the channel, once per suspension, that a lookup account's password is wrong.

Any process may start a suspension (a monitor job, `atp-bot verify`, a connection test's pre-check);
the monitor's jobs that read with lookup accounts claim the ones not yet announced, in the lockout
guard's ledger, so that one notice goes out whichever process or replica claims it.
"""

from __future__ import annotations

import logging

from bot.audit import AuditAction, AuditOutcome
from bot.directory import LookupBlocked, LookupSuspension, reading_with
from bot.monitor.context import MonitorContext
from bot.monitor.delivery import LOOKUP_SUSPENSION
from bot.monitor.memory import MonitorMemory
from bot.monitor.models import LookupSuspensionNotice

log = logging.getLogger(__name__)


def _notice(ctx: MonitorContext, suspension: LookupSuspension) -> LookupSuspensionNotice:
    return LookupSuspensionNotice(
        lookup_account=suspension.lookup_account,
        accounts=reading_with(ctx.settings.accounts, suspension.lookup_account),
        dc=suspension.dc,
        detail=suspension.detail,
        until=suspension.until,
    )


def queue_lookup_suspensions(ctx: MonitorContext) -> list[LookupSuspensionNotice]:
    """Queue a notice for each suspension not yet announced (the caller flushes the outbox)."""
    try:
        claimed = ctx.changes.guard.lookups.claim_announcements()
    except LookupBlocked as problem:
        log.warning("lookup suspensions not announced now: %s", problem.message)
        return []
    notices = []
    for suspension in claimed:
        notice = _notice(ctx, suspension)
        with ctx.memory.transaction() as db:
            MonitorMemory.enqueue(db, LOOKUP_SUSPENSION, notice.model_dump_json())
        for account_id in notice.accounts:
            ctx.audit(
                AuditAction.ALERT, account_id, AuditOutcome.FAILED, "lookup_suspended", suspension.message
            )
        notices.append(notice)
    return notices
