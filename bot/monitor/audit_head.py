"""The daily announcement of the audit chain's verified head (`[audit] announce_head`).

The head (row and hash) posted where the audit database cannot reach it gives every later
`atp-bot audit verify --anchor ID:HASH` a row the trail must still hold. That is what catches rows
dropped from the end together with a copy of an older, genuinely keyed head put back.
"""

from __future__ import annotations

import logging
from datetime import datetime

from bot.audit import AuditError, AuditTrail
from bot.monitor.context import MonitorContext
from bot.monitor.delivery import AUDIT_HEAD, flush_outbox
from bot.monitor.memory import MonitorMemory
from bot.monitor.models import AuditHeadNotice

log = logging.getLogger(__name__)


def audit_head_notice(trail: AuditTrail, now: datetime) -> AuditHeadNotice:
    """Hand the anchor command what it has not taken yet, verify the trail now; its head, or why it did
    not verify, and whether the anchor command is failing."""
    anchored = trail.anchor.deliver().problem if trail.anchor is not None else None
    try:
        result = trail.verify()
    except AuditError as exc:
        return AuditHeadNotice(
            verified_at=now, intact=False, rows=0, problem=str(exc), anchor_problem=anchored
        )
    keyed = result.keyed_from is not None
    if not result.intact:
        at_row = f"row {result.first_broken_id}: " if result.first_broken_id else ""
        problem = f"{at_row}{result.problem}"
        return AuditHeadNotice(
            verified_at=now,
            intact=False,
            rows=result.rows,
            keyed=keyed,
            problem=problem,
            anchor_problem=anchored,
        )
    return AuditHeadNotice(
        verified_at=now,
        intact=True,
        rows=result.rows,
        head=result.anchor,
        keyed=keyed,
        anchor_problem=anchored,
    )


def run_audit_head_announcement(ctx: MonitorContext) -> AuditHeadNotice:
    """Verify the audit trail and queue its head for the channel (kept until Slack takes it)."""
    notice = audit_head_notice(ctx.changes.audit, ctx.clock())
    if not notice.intact:
        log.error("audit trail not intact: %s", notice.problem)
    with ctx.memory.transaction() as db:
        MonitorMemory.enqueue(db, AUDIT_HEAD, notice.model_dump_json())
    flush_outbox(ctx.notifier, ctx.memory)
    return notice
