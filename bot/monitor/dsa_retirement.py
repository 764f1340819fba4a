"""A step of the monitor cycle: tell the channel, once, when a directory service account becomes
removable (every sensor of its domains is unified, `bot.fleet.dsa_statuses`).

The last verdict told for each account (`needed` or `removable`) is kept in the monitor's memory, in
the cycle's transaction, so the notice goes out once across restarts and replicas (the cycle runs on one
replica at a time). An `unknown` verdict (Graph unreadable this cycle) changes nothing; an account that
is needed again and then removable again is told again.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Column, Connection, MetaData, Table, Text, delete, insert, select

from bot.audit import AuditAction, AuditOutcome
from bot.config import Settings
from bot.fleet import dsa_statuses
from bot.graph import GraphSensor
from bot.monitor.context import MonitorContext
from bot.monitor.delivery import DSA_REMOVABLE
from bot.monitor.memory import MonitorMemory
from bot.monitor.models import DsaRemovableNotice

log = logging.getLogger(__name__)

_metadata = MetaData()
_verdicts = Table(
    "dsa_verdicts",
    _metadata,
    Column("account_id", Text, primary_key=True),
    Column("verdict", Text, nullable=False),
)


def _told(db: Connection) -> dict[str, str]:
    _metadata.create_all(db)  # in the monitor's database, beside its other tables
    rows = db.execute(select(_verdicts.c.account_id, _verdicts.c.verdict))
    return {account_id: verdict for account_id, verdict in rows}


def _remember(db: Connection, account_id: str, verdict: str) -> None:
    db.execute(delete(_verdicts).where(_verdicts.c.account_id == account_id))
    db.execute(insert(_verdicts).values(account_id=account_id, verdict=verdict))


def watch_dsa_retirement(
    db: Connection, settings: Settings, graph: Sequence[GraphSensor], graph_error: str | None, now: datetime
) -> list[DsaRemovableNotice]:
    """Queue a notice for each account that became removable since the last verdict told; remember the
    accounts' verdicts. Nothing without Graph (`[graph] discover_sensors` off: every verdict unknown)."""
    if not settings.graph.discover_sensors:
        return []
    told = _told(db)
    notices = []
    for status in dsa_statuses(settings, graph, graph_error):
        if status.verdict == "unknown" or told.get(status.account) == status.verdict:
            continue
        _remember(db, status.account, status.verdict)
        if status.verdict == "removable":
            notice = DsaRemovableNotice(
                account_id=status.account,
                domains=tuple(status.domains),
                unified_sensors=tuple(status.unified_sensors),
                at=now,
            )
            MonitorMemory.enqueue(db, DSA_REMOVABLE, notice.model_dump_json())
            notices.append(notice)
    gone = told.keys() - {a.id for a in settings.accounts}
    if gone:
        db.execute(delete(_verdicts).where(_verdicts.c.account_id.in_(sorted(gone))))
    return notices


def audit_dsa_removable(ctx: MonitorContext, notices: Sequence[DsaRemovableNotice]) -> None:
    for notice in notices:
        detail = f"no sensor uses it any more: unified sensors {', '.join(notice.unified_sensors)}"
        ctx.audit(AuditAction.ALERT, notice.account_id, AuditOutcome.OK, "dsa_removable", detail[:500])
        log.warning("account %s: directory service account removable: %s", notice.account_id, detail)
