"""`/atp status [account]`: check the sensors now and show the result to the person who asked."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from slack_bolt import App, Respond

from bot.audit import AuditAction, AuditEvent, AuditOutcome, AuditSink, record_or_log
from bot.change import record_checks, sensors_for_account
from bot.change.portal import PortalError, waiting_since
from bot.config import AccountConfig, ConfigError
from bot.directory import LockoutGuard
from bot.fleet import graph_notes
from bot.monitor.drift import check_drift, render_report
from bot.sensors import SensorResult
from bot.slack.context import JOINED_NOTE, CommandContext, Person, Services, Subcommand
from bot.slack.text import inline
from bot.slack.views import section
from bot.store import StoreError
from commands.shared.arguments import account_argument
from commands.shared.sensor_report import LiveReport

NAME = "status"
# Slack accepts a response URL's posts "up to 5 times within 30 minutes": the report is budgeted (first
# post, progress refreshes 2, 4, 8 s apart, the final report), or its last post would be refused.
RESPONSE_URL_USES = 5
FIRST_REFRESH_SECONDS = 2.0


def handle(ctx: CommandContext) -> None:
    settings = ctx.services.settings
    account, error = account_argument(settings, ctx.args)
    if error:
        ctx.reply(error)
        return
    watched = [a for a in settings.accounts if a.lookup_username and account in (None, a.id)]
    if watched:
        ctx.services.submit(run_drift_status, ctx.services, ctx.respond, watched)
    messages = RESPONSE_URL_USES - (1 if watched else 0)  # the drift report uses the response URL once
    sensors = sensors_for_account(settings, account) if account else list(settings.sensors)
    waiting = portal_note(ctx.services, account)
    if not sensors:
        ctx.reply(waiting + "No sensors are configured" + (f" for account `{account}`." if account else "."))
        return
    ctx.reply(f"{waiting}:hourglass_flowing_sand: Checking {len(sensors)} sensor(s)…")
    names = [s.name for s in sensors]

    def tell(text: str) -> None:
        ctx.respond(text=text, response_type="ephemeral", replace_original=True)

    person = Person(ctx.actor, AuditAction.CHECK, account, f"/atp status requested by {ctx.actor}", tell)
    ctx.services.submit_for(
        person, lambda: run_status(ctx.services, ctx.respond, ctx.actor, names, max_messages=messages)
    )


def portal_note(services: Services, account: str | None) -> str:
    """A line per saved password that waits for the portal step (Defender for Identity does not have it)."""
    portal = services.changes.portal if services.changes else None
    try:
        steps = portal.pending() if portal else []
    except PortalError as exc:
        return f":warning: {inline(str(exc))}\n"
    return "".join(
        f":hourglass: *{step.account_id}*: {inline(waiting_since(step))}: save it in the Defender portal, "
        "then click *Done in the portal* on its message.\n"
        for step in steps
        if account in (None, step.account_id)
    )


def run_status(
    services: Services, respond: Respond, actor: str, names: list[str], *, max_messages: int
) -> None:
    """On the bot's executor: check (or join a check of the same sensors already running), replacing the
    ephemeral reply as results come in, in at most `max_messages` posts to the response URL."""

    def show(text: str, blocks: list[dict[str, Any]]) -> None:
        respond(text=text, blocks=blocks, response_type="ephemeral", replace_original=True)

    def post(text: str, blocks: list[dict[str, Any]]) -> str:
        show(text, blocks)
        return ""  # a response URL message has no ts: every update replaces it

    report = LiveReport(
        post,
        lambda _ts, text, blocks: show(text, blocks),
        "*Sensor status*",
        len(names),
        interval=FIRST_REFRESH_SECONDS,
        max_messages=max_messages,
    )
    graph, graph_error = services.fleet.sensors()
    for note in graph_notes(services.settings, names, graph):
        report.note(note)
    if graph_error is not None:
        report.note(f"Graph could not be used: {graph_error}")
    audited = _AuditedReport(report, services.audit, actor)
    services.status_checks.check(names, audited, on_join=lambda: report.note(JOINED_NOTE))


def run_drift_status(services: Services, respond: Respond, accounts: list[AccountConfig]) -> None:
    """On the bot's executor: each account's drift, read with its lookup account (no bind), in a
    message of its own beside the sensor report."""
    store = services.changes.store if services.changes else None
    guard = services.changes.guard if services.changes else LockoutGuard.for_settings(services.settings)
    lines = []
    for account in accounts:
        try:
            saved = store.metadata(account.id) if store else None
            report = check_drift(account, saved, datetime.now(UTC), guard=guard)
            report_lines = render_report(report)
        except (StoreError, ConfigError) as exc:
            report_lines = [f"UNKNOWN: account {account.id}: {exc}"]
        lines += [f"*{inline(report_lines[0])}*", *(inline(line.strip()) for line in report_lines[1:])]
    text = "*Password drift* (read with the lookup accounts)\n" + "\n".join(lines)
    respond(text=text, blocks=[section(text[:2900])], response_type="ephemeral", replace_original=False)


class _AuditedReport:
    """The requester's live report; the round of checks they were shown is audited under their name."""

    def __init__(self, report: LiveReport, audit: AuditSink, actor: str) -> None:
        self._report, self._audit, self._actor = report, audit, actor

    def add(self, result: SensorResult) -> None:
        self._report.add(result)

    def finish(self, results: Sequence[SensorResult]) -> None:
        self._report.finish(results)
        record_checks(self._audit, self._actor, None, results)

    def fail(self, problem: str) -> None:
        self._report.fail(problem)
        failed = AuditEvent(
            actor=self._actor,
            action=AuditAction.CHECK,
            account=None,
            outcome=AuditOutcome.ERROR,
            detail=problem,
        )
        record_or_log(self._audit, failed)


SUBCOMMAND = Subcommand(
    name=NAME,
    summary="check every sensor now: services and credential errors",
    handler=handle,
    usage="[account]",
    expensive=True,
)


def register(app: App, services: Services) -> None:
    """`/atp status` has no interactions."""
