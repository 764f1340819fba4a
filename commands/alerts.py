"""Channel alerts from the monitor, their buttons, and `/atp alerts` (the open incidents).

`SlackNotifier` implements the monitor's notifier with Block Kit; the views are pure functions. The
*Update password* button opens the `/atp password` modal (owned by `commands.password`); *Re-check now*
runs a monitor cycle; *Start service* (with Slack's confirmation dialog) starts a stopped sensor service.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ValidationError
from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.audit import AuditAction
from bot.monitor.actions import start_sensor_service
from bot.monitor.credential_issue import open_credential_issues
from bot.monitor.models import (
    AuditHeadNotice,
    CredentialIssueAlert,
    DriftNotice,
    DsaRemovableNotice,
    ExpiryWarning,
    HealthIssueNotice,
    Incident,
    IncidentAction,
    LookupSuspensionNotice,
    MessageRef,
    PortalNotice,
    ReachabilityNotice,
    RecheckReport,
    SensorHealthNotice,
)
from bot.monitor.notify import NotifierError
from bot.monitor.render import incident_story, render_portal
from bot.sensors.credential_signatures import describe
from bot.slack.audit import interaction_actor
from bot.slack.context import CommandContext, Person, Services, Subcommand, publish_text
from bot.slack.middleware import authorize_interaction, limit_expensive_interaction
from bot.slack.text import code_span, escape, inline
from bot.slack.views import plain, section
from commands.credential_alert import credential_issue_message
from commands.dsa import removable_message
from commands.password.views import open_button

log = logging.getLogger(__name__)

NAME = "alerts"


class Action(StrEnum):
    RECHECK = "atp_alert_recheck"
    START_SERVICE = "atp_alert_start_service"


# Start-service buttons carry sensor and service in their action id: Slack wants ids unique per message.
START_SERVICE_IDS = re.compile(f"^{Action.START_SERVICE}:")


class StartServiceValue(BaseModel):
    """What a *Start service* button carries."""

    sensor: str
    service: str


def _when(moment: Any) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC" if moment else "unknown"


def _subject(account_id: str | None) -> str:
    """Whose incident: an account's, or that of the sensors that name none (several accounts configured)."""
    return f"account *{account_id}*" if account_id else "the sensors that name no account"


def _button(action: IncidentAction) -> dict[str, Any]:
    if action.kind == "update_password":
        return open_button(action.account_id)  # without an account the user picks one
    account = {"value": action.account_id} if action.account_id else {}
    if action.kind == "recheck":
        return {"type": "button", "action_id": Action.RECHECK, "text": plain("Re-check now"), **account}
    value = StartServiceValue(sensor=action.sensor or "", service=action.service or "")
    return {
        "type": "button",
        "action_id": f"{Action.START_SERVICE}:{action.sensor}:{action.service}",
        "text": plain(f"Start {action.service} on {action.sensor}"[:75]),
        "value": value.model_dump_json(),
        "confirm": {
            "title": plain("Start the service?"),
            "text": {"type": "mrkdwn", "text": f"Start `{action.service}` on *{action.sensor}*?"},
            "confirm": plain("Start"),
            "deny": plain("Cancel"),
        },
    }


def _heading(incident: Incident) -> str:
    subject, first_seen = _subject(incident.account_id), _when(incident.first_seen)
    if incident.about_credentials:
        return (
            f":rotating_light: *Credential problem* on {subject}: the sensors cannot use the directory "
            f"service account (first seen {first_seen})."
        )
    return (
        f":rotating_light: *Sensor service problem* on {subject}: a sensor service is not running; no "
        f"credential error was seen (first seen {first_seen})."
    )


def incident_message(incident: Incident) -> tuple[str, list[dict[str, Any]]]:
    """The alert: affected sensors, first seen, a sample line, and the buttons that lead to the fix; once
    closed, the whole story (what was found, how many, when, clean since when) in one line."""
    if incident.closed:
        story = incident_story(incident, name=lambda sensor: f"*{inline(sensor)}*", at=_when)
        text = f":white_check_mark: *Resolved*: {_subject(incident.account_id)}: {story}."
        return text, [section(text)]
    heading = _heading(incident)
    lines = []
    for issue in incident.sensors:
        parts = []
        if issue.credential_errors:
            parts.append(f"{describe(issue.credential_errors, issue.reason)}, last {_when(issue.last_error)}")
        parts += [f"service `{s.name}` is {inline(s.state)}" for s in issue.stopped_services]
        lines.append(f"• *{issue.sensor}*: " + "; ".join(parts))
    if incident.gmsa_verdict:
        lines.append(f"• gMSA: {inline(incident.gmsa_verdict)}")
    blocks = [section(heading), section("\n".join(lines) or "•")]
    if incident.sample:
        blocks.append(
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": code_span(incident.sample, 500)}],
            }
        )
    blocks.append({"type": "actions", "elements": [_button(a) for a in incident.actions][:25]})
    return f"{heading}\n" + "\n".join(lines), blocks


def recheck_message(report: RecheckReport) -> str:
    verdict = ":white_check_mark: all healthy" if report.healthy else ":rotating_light: needs attention"
    lines = [f"*Re-check* {report.delay_minutes} min after the change: {verdict}"]
    for sensor in report.sensors:
        state = "ok" if sensor.healthy else "; ".join(sensor.problems) or sensor.error or "unreachable"
        lines.append(f"• *{sensor.name}*: {inline(state)}")
    return "\n".join(lines)


def reachability_message(notice: ReachabilityNotice) -> str:
    if notice.reachable:
        since = _when(notice.since)
        return f":white_check_mark: Sensor *{notice.sensor}* answers again (unreachable since {since})."
    if notice.access_denied:
        return (
            f":no_entry: Sensor *{notice.sensor}* refuses atp-bot's WinRM credential: {notice.failures} "
            f"checks in a row since {_when(notice.since)}: {inline(notice.detail or 'no detail')}"
        )
    return (
        f":warning: Sensor *{notice.sensor}* cannot be reached: {notice.failures} checks in a row failed "
        f"since {_when(notice.since)}: {inline(notice.detail or 'no detail')}"
    )


def expiry_message(warning: ExpiryWarning) -> str:
    if warning.days_left < 0:
        expired = _when(warning.expires_at)
        return f":rotating_light: The password of account *{warning.account_id}* has *expired* ({expired})."
    return (
        f":hourglass: The password of account *{warning.account_id}* expires in *{warning.days_left} day(s)* "
        f"({_when(warning.expires_at)}). Change it in time with `/atp password {warning.account_id}`."
    )


def audit_head_message(notice: AuditHeadNotice) -> str:
    anchored = f"\n:warning: {inline(notice.anchor_problem)}." if notice.anchor_problem else ""
    if not notice.intact:
        return (
            f":rotating_light: The audit trail is *not intact* ({_when(notice.verified_at)}): "
            f"{inline(notice.problem or 'unknown problem')}. Run `atp-bot audit verify`.{anchored}"
        )
    keyed = "keyed" if notice.keyed else "*unkeyed*: run `atp-bot audit rekey`"
    return (
        f":closed_lock_with_key: Audit trail intact ({_when(notice.verified_at)}): "
        f"{notice.rows} rows, {keyed}. "
        f"Head `{notice.head or 'none'}`: a later `atp-bot audit verify --anchor {notice.head or 'ID:HASH'}` "
        f"must still find it.{anchored}"
    )


def sensor_health_message(notice: SensorHealthNotice) -> str:
    problems = "; ".join(inline(p) for p in notice.problems)
    if notice.recovered:
        return f":white_check_mark: Sensor *{inline(notice.sensor)}* is healthy again (was: {problems})."
    return f":warning: Sensor *{inline(notice.sensor)}* needs attention: {problems}"


def drift_message(notice: DriftNotice) -> tuple[str, list[dict[str, Any]]]:
    """A drift alert with the *Update password* button, or the recovery message."""
    findings = " ".join(inline(f) for f in notice.findings)
    if notice.recovered:
        text = f":white_check_mark: Account *{notice.account_id}* is in sync with AD again. {findings}"
        return text, [section(text)]
    text = f":rotating_light: {findings}"
    button = _button(IncidentAction(kind="update_password", account_id=notice.account_id))
    return text, [section(text[:2900]), {"type": "actions", "elements": [button]}]


def lookup_suspension_message(notice: LookupSuspensionNotice) -> str:
    accounts = ", ".join(f"*{inline(a)}*" for a in notice.accounts)
    return (
        f":lock: Lookup account *{inline(notice.lookup_account)}* (accounts {accounts}): "
        f"the lookup account's password is wrong: {inline(notice.dc)} refused it "
        f"({inline(notice.detail)}). atp-bot binds with it no more, and reads no drift, expiry or "
        "lockout state with it, until its password source (`lookup_password_env`/`lookup_password_file`) "
        f"changes or until {_when(notice.until)}. `atp-bot guard status` shows it."
    )


class SlackNotifier:
    """The monitor's notifier for one channel. Slack failures become NotifierError (retried next cycle)."""

    def __init__(self, client: WebClient, channel: str) -> None:
        self.client = client
        self.channel = channel

    def _call(self, method: str, **kwargs: Any) -> dict[str, Any]:
        try:
            return dict(getattr(self.client, method)(**kwargs).data)
        except (SlackApiError, SlackClientError, OSError) as exc:
            raise NotifierError(f"Slack {method} failed: {exc}") from None

    def _post(
        self, text: str, blocks: list[dict[str, Any]] | None = None, thread: MessageRef | None = None
    ) -> MessageRef:
        answer = self._call(
            "chat_postMessage",
            channel=thread.channel if thread else self.channel,
            text=text,
            blocks=blocks,
            thread_ts=thread.ts if thread else None,
        )
        return MessageRef(channel=str(answer["channel"]), ts=str(answer["ts"]))

    def post_incident(self, incident: Incident) -> MessageRef:
        return self._post(*incident_message(incident))

    def update_incident(self, ref: MessageRef, incident: Incident) -> None:
        text, blocks = incident_message(incident)
        self._call("chat_update", channel=ref.channel, ts=ref.ts, text=text, blocks=blocks)

    def close_incident(self, ref: MessageRef, incident: Incident) -> None:
        text, blocks = incident_message(incident)
        self._call("chat_update", channel=ref.channel, ts=ref.ts, text=text, blocks=blocks)
        self._post(text, thread=ref)

    def post_credential_issue(self, alert: CredentialIssueAlert) -> MessageRef:
        return self._post(*credential_issue_message(alert))

    def close_credential_issue(self, ref: MessageRef, alert: CredentialIssueAlert) -> None:
        self._post(*credential_issue_message(alert), thread=ref)

    def post_unreachable(self, notice: ReachabilityNotice) -> None:
        self._post(reachability_message(notice))

    def post_reachable(self, notice: ReachabilityNotice) -> None:
        self._post(reachability_message(notice))

    def post_recheck(self, thread_ref: MessageRef, report: RecheckReport) -> None:
        self._post(recheck_message(report), thread=thread_ref)

    def post_health_issue(self, thread_ref: MessageRef, notice: HealthIssueNotice) -> None:
        mark = ":white_check_mark:" if notice.closed_at else ":hourglass:"
        self._post(f"{mark} {inline(notice.text())}", thread=thread_ref)  # the issue's name is Graph's text

    def post_portal(self, thread_ref: MessageRef | None, notice: PortalNotice) -> None:
        mark = ":white_check_mark:" if notice.confirmed_at else ":hourglass:"
        self._post(f"{mark} {inline(render_portal(notice))}", thread=thread_ref)  # evidence is Graph's text

    def post_expiry_warning(self, warning: ExpiryWarning) -> None:
        self._post(expiry_message(warning))

    def post_audit_head(self, notice: AuditHeadNotice) -> None:
        self._post(audit_head_message(notice))

    def post_drift(self, notice: DriftNotice) -> None:
        self._post(*drift_message(notice))

    def post_lookup_suspension(self, notice: LookupSuspensionNotice) -> None:
        self._post(lookup_suspension_message(notice))

    def post_sensor_health(self, notice: SensorHealthNotice) -> None:
        self._post(sensor_health_message(notice))

    def post_dsa_removable(self, notice: DsaRemovableNotice) -> None:
        self._post(removable_message(notice))


def handle(ctx: CommandContext) -> None:
    """`/atp alerts`: the open incidents and credential health issues, to the person who asked."""
    scheduler = ctx.services.scheduler
    if scheduler is None:
        ctx.reply("The monitor is not running in this atp-bot.")
        return
    memory = scheduler.monitor.memory
    texts = [incident_message(s.incident)[0] for s in memory.incidents().values() if not s.incident.closed]
    texts += [credential_issue_message(alert)[0] for alert in open_credential_issues(memory)]
    if not texts:
        ctx.reply(":white_check_mark: No open credential incidents.")
        return
    ctx.reply("\n\n".join(texts), [section(t[:2900]) for t in texts][:45])


def on_recheck(services: Services, ack: Ack, body: dict[str, Any], context: BoltContext) -> None:
    ack()
    scheduler = services.scheduler
    if scheduler is None:
        return
    user, channel = body["user"]["id"], body.get("channel", {}).get("id") or services.settings.slack.channel

    def tell(text: str) -> None:
        if channel:
            services.client.chat_postEphemeral(channel=channel, user=user, text=text)

    def recheck(tell_all: Callable[[str], None]) -> None:
        result = scheduler.run_cycle_now()
        problems = sum(not r.healthy for r in result.results)
        tell_all(f"Re-check done: {len(result.results)} sensor(s) checked, {problems} with problems.")

    actor = interaction_actor(body, context)
    person = Person(actor, AuditAction.CHECK, None, f"the Re-check now button clicked by {actor}", tell)
    services.submit_shared(("recheck",), person, lambda publish: recheck(publish_text(publish)))


def on_start_service(services: Services, ack: Ack, body: dict[str, Any], context: BoltContext) -> None:
    ack()
    changes = services.changes
    try:
        target = StartServiceValue.model_validate_json(body["actions"][0]["value"])
    except (ValidationError, KeyError, json.JSONDecodeError):
        return
    if changes is None:
        return
    user = body["user"]
    actor = interaction_actor(body, context)
    channel, ts = body.get("channel", {}).get("id"), body.get("container", {}).get("message_ts")

    def tell(text: str) -> None:
        if channel:
            services.client.chat_postMessage(channel=channel, thread_ts=ts, text=text)

    def start() -> None:
        graph, _ = changes.fleet.sensors()
        report = start_sensor_service(
            services.settings, changes.audit, target.sensor, target.service, actor, graph
        )
        icon = ":white_check_mark:" if report.ok else ":x:"
        service, sensor = code_span(target.service), escape(target.sensor)  # from the button: forgeable
        tell(f"{icon} <@{user['id']}> started {service} on *{sensor}*: {inline(report.message)}")
        if report.ok and services.scheduler is not None:
            services.scheduler.run_cycle_now()  # the check that closes the incident once it is clean

    doing = f"the Start service button ({target.service} on {target.sensor}) clicked by {actor}"
    services.submit_for(Person(actor, AuditAction.START_SERVICE, None, doing, tell), start)


SUBCOMMAND = Subcommand(name=NAME, summary="show the open credential incidents", handler=handle)


def register(app: App, services: Services) -> None:
    authorized = [authorize_interaction(services, NAME)]

    def recheck(ack: Ack, body: dict[str, Any], context: BoltContext) -> None:
        on_recheck(services, ack, body, context)

    def start_service(ack: Ack, body: dict[str, Any], context: BoltContext) -> None:
        on_start_service(services, ack, body, context)

    limited = [*authorized, limit_expensive_interaction(services, "recheck")]
    app.action(Action.RECHECK, middleware=limited)(recheck)
    app.action({"action_id": START_SERVICE_IDS}, middleware=authorized)(start_service)
