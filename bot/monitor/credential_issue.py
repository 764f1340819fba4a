"""Defender for Identity's credential health issue as one alert per issue, whichever sensors it names.

MDI checks the directory service account at workspace level on every sensor, unified 3.x sensors
included: "Directory services user credentials are incorrect" may name only unified sensors (which use no
DSA) while a classic sensor elsewhere still needs the account. So an open credential health issue (global
or sensor type, matched by `[graph] issue_patterns`) is the DSA's: each monitor cycle it opens one alert,
keyed by the issue's Graph id, for the configured accounts of the domains it names (every account when it
names none). The alert is remembered in the monitor's state (restarts, replicas); when the issue is no
longer open, one reply in the alert's thread says so. Graph's text is shown, never used to pick anything
but which configured accounts' domains it names.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Column, Connection, Integer, MetaData, Table, Text, delete, select

from bot.audit import AuditAction, AuditOutcome
from bot.config import AccountConfig
from bot.graph import HealthIssue
from bot.monitor.context import MonitorContext
from bot.monitor.memory import MonitorMemory
from bot.monitor.models import CredentialIssueAlert, MessageRef
from bot.monitor.notify import Notifier, NotifierError

log = logging.getLogger(__name__)

# Graph's ids are GUID-like; the id is this table's key, so one that could not be a key is not used.
ISSUE_ID = re.compile(r"[A-Za-z0-9_.:=+/-]{1,128}")

_metadata = MetaData()
_alerts = Table(
    "credential_issue_alerts",
    _metadata,
    Column("issue_id", Text, primary_key=True),
    Column("data", Text, nullable=False),
    Column("ref", Text),
    Column("delivered", Integer, nullable=False),
)


@dataclass(frozen=True)
class StoredIssueAlert:
    alert: CredentialIssueAlert
    ref: MessageRef | None
    delivered: bool


def _domain(name: str) -> str:
    return name.strip().lower().rstrip(".")


def alert_for(issue: HealthIssue, accounts: Sequence[AccountConfig], now: datetime) -> CredentialIssueAlert:
    """The issue's alert: the accounts whose domains it names (case-insensitive, trailing dot ignored), or
    every account when it names no domain."""
    named = {_domain(d) for d in issue.domains}
    owners = [a for a in accounts if not named or named & set(a.dns_domains)]
    return CredentialIssueAlert(
        issue_id=issue.id,
        display_name=issue.display_name,
        issue_type=issue.issue_type,
        domains=issue.domains,
        sensors=issue.sensors,
        accounts=tuple(a.id for a in owners if a.kind != "gmsa"),
        gmsa_accounts=tuple(a.id for a in owners if a.kind == "gmsa"),
        opened_at=now,
    )


def _load(db: Connection) -> dict[str, StoredIssueAlert]:
    _metadata.create_all(db)  # checks first; cycles never overlap (the monitor's shared lock)
    rows = db.execute(select(_alerts.c.data, _alerts.c.ref, _alerts.c.delivered)).all()
    found = {}
    for data, ref, delivered in rows:
        alert = CredentialIssueAlert.model_validate_json(data)
        found[alert.issue_id] = StoredIssueAlert(
            alert, MessageRef.model_validate_json(ref) if ref else None, bool(delivered)
        )
    return found


def _save(db: Connection, stored: StoredIssueAlert) -> None:
    db.execute(delete(_alerts).where(_alerts.c.issue_id == stored.alert.issue_id))
    db.execute(
        _alerts.insert().values(
            issue_id=stored.alert.issue_id,
            data=stored.alert.model_dump_json(),
            ref=stored.ref.model_dump_json() if stored.ref else None,
            delivered=int(stored.delivered),
        )
    )


def watch_credential_issues(
    db: Connection, accounts: Sequence[AccountConfig], issues: Iterable[HealthIssue] | None, now: datetime
) -> list[CredentialIssueAlert]:
    """Open an alert for each open credential issue not alerted yet and close the alerts of the issues no
    longer open; return what changed. `issues` None: Graph did not answer, nothing changes."""
    if issues is None:
        return []
    stored = _load(db)
    open_now = {issue.id: issue for issue in issues if ISSUE_ID.fullmatch(issue.id)}
    changed = [
        alert_for(issue, accounts, now) for issue_id, issue in open_now.items() if issue_id not in stored
    ]
    changed += [
        item.alert.model_copy(update={"closed_at": now})
        for issue_id, item in stored.items()
        if issue_id not in open_now and not item.alert.closed
    ]
    for alert in changed:
        previous = stored.get(alert.issue_id)
        _save(db, StoredIssueAlert(alert, previous.ref if previous else None, False))
    return changed


def audit_credential_issues(ctx: MonitorContext, changed: Sequence[CredentialIssueAlert]) -> None:
    """An `alert` row for each credential issue alerted or closed (the account, when it names one)."""
    for alert in changed:
        names = (*alert.accounts, *alert.gmsa_accounts)
        account = names[0] if len(names) == 1 else None
        reason = "credential_health_issue_closed" if alert.closed else "credential_health_issue"
        outcome = AuditOutcome.OK if alert.closed else AuditOutcome.FAILED
        said = f"{alert.issue_id[:64]} ({(alert.issue_type or 'no type')[:20]})"  # Graph's words: bounded
        detail = f"health issue {said}; accounts: " + (", ".join(names) or "none")
        ctx.audit(AuditAction.ALERT, account, outcome, reason, detail)
        log.log(logging.INFO if alert.closed else logging.WARNING, "%s: %s", reason, detail)


def _deliver(notifier: Notifier, db: Connection, item: StoredIssueAlert) -> None:
    """Post the alert, or reply in its thread that the issue closed (then it is forgotten). An issue that
    closed before its alert was posted is posted once, already closed."""
    alert, ref = item.alert, item.ref
    if ref is not None and alert.closed:
        notifier.close_credential_issue(ref, alert)
    else:
        ref = notifier.post_credential_issue(alert)
    if alert.closed:
        db.execute(delete(_alerts).where(_alerts.c.issue_id == alert.issue_id))
    else:
        _save(db, StoredIssueAlert(alert, ref, True))


def open_credential_issues(memory: MonitorMemory) -> list[CredentialIssueAlert]:
    """The credential issue alerts not closed yet (for `/atp alerts`)."""
    with memory.transaction() as db:
        return [item.alert for item in _load(db).values() if not item.alert.closed]


def deliver_credential_issues(notifier: Notifier, memory: MonitorMemory) -> bool:
    """Send what the notifier was not told yet; True when nothing is left pending."""
    with memory.transaction() as db:
        pending = [item for item in _load(db).values() if not item.delivered]
    for item in pending:
        try:
            with memory.transaction() as db:
                _deliver(notifier, db, item)
        except NotifierError as exc:
            log.warning("credential health issue %s: not delivered, kept: %s", item.alert.issue_id, exc)
            return False
    return True
