"""After a saved change: watch Defender for Identity's health issues about the directory service account
and say in the change's thread when MDI closes them, or that one is still open after a limit.

Stateless: one job per poll, each with its own window of time. A poll tells the `closed` issues whose
`lastModifiedDateTime` falls in its window (so each closure is told once); the last poll, at
`[graph] issue_watch_minutes`, also tells the ones still `open`.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from bot.config import GraphConfig
from bot.graph import GraphHealthSource, HealthIssue, parse_health_issue
from bot.monitor.context import MonitorContext
from bot.monitor.delivery import HEALTH_ISSUE, flush_outbox
from bot.monitor.memory import MonitorMemory
from bot.monitor.models import HealthIssueNotice, MessageRef

log = logging.getLogger(__name__)

# The health issues of the directory service account (exact display names, compared case-insensitively).
DSA_ISSUE_NAMES = (
    "Directory services user credentials are incorrect",
    "Read-only user password to expire shortly",
    "Read-only user password expired",
)


def _time(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")) if value else None
    except ValueError:
        return None


def account_issues(
    source: GraphHealthSource, status: str, domains: tuple[str, ...]
) -> list[tuple[HealthIssue, datetime | None]]:
    """The DSA health issues with `status` in the account's domains (or naming none), each with its last
    modification time."""
    names = {n.lower() for n in DSA_ISSUE_NAMES}
    found = []
    for item in source.health_issues(status):
        issue = parse_health_issue(item)
        if issue is None or issue.display_name.lower() not in names:
            continue
        if issue.domains and domains and not {d.lower() for d in issue.domains} & set(domains):
            continue
        found.append((issue, _time(item.get("lastModifiedDateTime"))))
    return found


def watch_step(
    ctx: MonitorContext, account_id: str, thread: MessageRef, changed_at: datetime, step: int
) -> list[HealthIssueNotice]:
    """Poll `step` (1…n) of the watch: the issues MDI closed in this poll's window of time, and at the last
    poll the ones still open. Windows follow the schedule, not the run time, so each closure is told once."""
    if not isinstance(ctx.health, GraphHealthSource):
        return []
    config = ctx.settings.graph
    poll = timedelta(minutes=config.issue_watch_poll_minutes)
    start, end = changed_at + (step - 1) * poll, changed_at + step * poll
    domains = ctx.settings.account(account_id).dns_domains
    try:
        closed = account_issues(ctx.health, "closed", domains)
        still_open = account_issues(ctx.health, "open", domains) if _last(config, step) else []
    finally:
        ctx.health.close()  # polls are minutes apart: hold no connection in between
    notices = [
        HealthIssueNotice.closed(account_id, issue.display_name, changed_at, at)
        for issue, at in closed
        if at is not None and start <= at < end
    ]
    limit = timedelta(minutes=config.issue_watch_minutes)
    notices += [
        HealthIssueNotice.still_open(account_id, issue.display_name, changed_at, limit)
        for issue, _ in still_open
    ]
    if notices:
        with ctx.memory.transaction() as db:
            for notice in notices:
                MonitorMemory.enqueue(db, HEALTH_ISSUE, notice.model_dump_json(), thread)
        flush_outbox(ctx.notifier, ctx.memory)
    log.info("account %s: health issue watch %d: %d notice(s)", account_id, step, len(notices))
    return notices


def _last(config: GraphConfig, step: int) -> bool:
    return step >= watch_steps(config.issue_watch_minutes, config.issue_watch_poll_minutes)


def watch_steps(limit_minutes: int, poll_minutes: int) -> int:
    return max(1, -(-limit_minutes // poll_minutes))
