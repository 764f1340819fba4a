"""The portal step seen from the monitor: while a saved password waits for someone to save it in the
Defender portal, the account's credential errors are expected (no new incident), the channel is reminded
once after `[[accounts]] portal_reminder_minutes`, and the step confirms itself as soon as Defender for
Identity is seen using the new password (Graph closes the credential health issue after the save); the
follow-up check then runs in the change's thread."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from bot.change.portal import PortalError, PortalStep, confirm_step
from bot.graph import GraphError, GraphHealthSource
from bot.monitor.context import MonitorContext
from bot.monitor.delivery import PORTAL, flush_outbox
from bot.monitor.issue_watch import account_issues
from bot.monitor.memory import MonitorMemory
from bot.monitor.models import PortalNotice, SensorIssue
from bot.monitor.recheck import run_recheck

log = logging.getLogger(__name__)

# The health issue that closes when MDI's sensors authenticate with the password the portal holds.
CREDENTIALS_ISSUE = "directory services user credentials are incorrect"


def waiting_for_portal(ctx: MonitorContext) -> frozenset[str]:
    """The accounts whose saved password waits for the portal step (their credential errors are
    expected). A database failure is logged and treated as none waiting: incidents open as usual."""
    if ctx.changes.portal is None:
        return frozenset()
    try:
        return frozenset(step.account_id for step in ctx.changes.portal.pending())
    except PortalError as exc:
        log.error("monitor: %s", exc)
        return frozenset()


def expected_errors(
    ctx: MonitorContext, account_id: str, issues: dict[str, SensorIssue], all_answered: bool
) -> dict[str, SensorIssue]:
    """A pending account's sensor issues from this cycle, its expected credential errors left out (stopped
    services stay). Whether the sensors logged any is kept with the step: once they stop, MDI uses the
    new password (`watch_portal` confirms it)."""
    errors = any(issue.credential_errors for issue in issues.values())
    if ctx.changes.portal is not None:
        try:
            quiet = all_answered and not issues  # every sensor answered: no error, no stopped service
            ctx.changes.portal.observe(account_id, ctx.clock(), errors=errors, all_clean=quiet)
        except PortalError as exc:
            log.error("monitor: %s", exc)
    return without_credential_errors(issues)


def without_credential_errors(issues: dict[str, SensorIssue]) -> dict[str, SensorIssue]:
    """The sensor issues without their credential errors (stopped services stay)."""
    kept = {}
    for name, issue in issues.items():
        if issue.stopped_services:
            kept[name] = issue.model_copy(
                update={"credential_errors": 0, "first_error": None, "last_error": None, "sample": None}
            )
    return kept


def watch_portal(ctx: MonitorContext) -> list[PortalNotice]:
    """One pass over the pending portal steps: confirm the ones MDI is seen using, remind of the others
    once their reminder delay is over. Queued and sent like every notice."""
    steps = ctx.changes.portal
    if steps is None:
        return []
    now, notices = ctx.clock(), []
    try:
        for step in steps.pending():
            notice = _confirmed(ctx, step) or _reminder(ctx, step, now)
            if notice is not None:
                notices.append((step, notice))
    except PortalError as exc:
        log.error("monitor: the portal steps cannot be watched: %s", exc)
    if notices:
        with ctx.memory.transaction() as db:
            for step, notice in notices:
                MonitorMemory.enqueue(db, PORTAL, notice.model_dump_json(), step.thread)
        flush_outbox(ctx.notifier, ctx.memory)
    for step, notice in notices:
        if notice.confirmed_at is not None and step.thread is not None:
            run_recheck(ctx, step.account_id, step.thread, notice.confirmed_at, 0)
    return [notice for _, notice in notices]


def _notice(ctx: MonitorContext, step: PortalStep, **confirmed: object) -> PortalNotice:
    username = ctx.settings.account(step.account_id).username
    return PortalNotice.model_validate(
        {"account_id": step.account_id, "username": username, "saved_at": step.saved_at} | confirmed
    )


def _reminder(ctx: MonitorContext, step: PortalStep, now: datetime) -> PortalNotice | None:
    delay = timedelta(minutes=ctx.settings.account(step.account_id).portal_reminder_minutes)
    if step.reminded or now - step.saved_at < delay:
        return None
    assert ctx.changes.portal is not None
    if ctx.changes.portal.take_reminder(step.account_id, step.saved_at) is None:
        return None  # another replica reminded, or the step was confirmed meanwhile
    log.warning("account %s: still waiting for the portal step since %s", step.account_id, step.saved_at)
    return _notice(ctx, step)


def _confirmed(ctx: MonitorContext, step: PortalStep) -> PortalNotice | None:
    """Defender for Identity seen using the new password: the sensors stopped logging credential errors
    (a full check without one after the last), or the credential health issue of the account's domains
    closed after the save (Graph's lastModifiedDateTime). Confirmed at that moment."""
    seen = _quiet(step) or _issue_closed(ctx, step)
    if seen is None:
        return None
    at, evidence = seen
    assert ctx.changes.portal is not None
    if confirm_step(ctx.changes.portal, ctx.changes.audit, step.account_id, ctx.actor, at, evidence) is None:
        return None
    return _notice(ctx, step, confirmed_at=at, evidence=evidence)


def _quiet(step: PortalStep) -> tuple[datetime, str] | None:
    if step.errors_at is None or step.quiet_at is None:
        return None
    return step.quiet_at, (
        f"the sensors stopped logging credential errors: the last at {step.errors_at:%H:%M} UTC, none in "
        f"the check at {step.quiet_at:%H:%M} UTC"
    )


def _issue_closed(ctx: MonitorContext, step: PortalStep) -> tuple[datetime, str] | None:
    if not isinstance(ctx.health, GraphHealthSource):
        return None
    domains = ctx.settings.account(step.account_id).dns_domains
    try:
        closed = account_issues(ctx.health, "closed", domains)
    except GraphError as exc:
        log.warning(
            "account %s: Graph cannot tell whether MDI uses the new password: %s", step.account_id, exc
        )
        return None
    finally:
        ctx.health.close()
    seen = sorted(
        (at, issue.display_name)
        for issue, at in closed
        if issue.display_name.lower() == CREDENTIALS_ISSUE and at is not None and at > step.saved_at
    )
    if not seen:
        return None
    at, name = seen[0]
    return at, f"Graph: the health issue '{name}' closed at {at:%H:%M} UTC"
