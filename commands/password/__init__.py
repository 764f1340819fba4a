"""`/atp password [account]`: change a directory service account's password from a private modal.

Slash command → modal → inline validation → "Testing…" → (on the bot's executor) the change path:
connection test, save only if it passed, audit → the modal shows the outcome → the channel is told who
changed which account → follow-up sensor checks in a thread, updated in place.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.audit import AuditAction, AuditEvent, AuditOutcome
from bot.change import ChangeOutcome, ChangeProgress, PasswordChanges, Recovery
from bot.change.approvals import HeldRequest, Requester
from bot.change.failures import report_failure
from bot.change.portal import remember_thread
from bot.config import ConfigError, Settings, password_refusal
from bot.monitor.models import MessageRef
from bot.sensors import SensorResult
from bot.slack.audit import interaction_actor
from bot.slack.context import CommandContext, Person, Services, Subcommand
from bot.slack.middleware import authorize_interaction
from bot.slack.text import escape, inline
from bot.slack.views import decode_metadata, notice_modal, update_view
from commands.password import approval, portal
from commands.password.approval_expiry import ExpirySweeper
from commands.password.approval_views import waiting_modal
from commands.password.origin import origin_channel, origin_user, slack_origin
from commands.password.validation import Submission, validate
from commands.password.views import (
    TITLE,
    Action,
    Callback,
    PasswordModalOrigin,
    announcement,
    interrupted_notice,
    password_modal,
    result_modal,
    testing_modal,
)
from commands.shared.arguments import account_argument
from commands.shared.sensor_report import NOT_USING_DSA, LiveReport, thread_report

log = logging.getLogger(__name__)

NAME = "password"
# Slack applies a submission's `update` acknowledgement asynchronously: a views.update sent within
# milliseconds of it (a DC that refuses connections answers that fast) could arrive first and then be
# overwritten by the "Testing…" view. The outcome is shown no sooner than this after the acknowledgement.
ACK_SETTLE_SECONDS = 1.0


def open_modal(client: WebClient, trigger_id: str, settings: Settings, state: PasswordModalOrigin) -> None:
    client.views_open(trigger_id=trigger_id, view=password_modal(settings, state))


def handle(ctx: CommandContext) -> None:
    settings = ctx.services.settings
    account_id, error = account_argument(settings, ctx.args)
    if error:
        ctx.reply(error)
        return
    if account_id is None and len(settings.accounts) == 1:
        account_id = settings.accounts[0].id
    refusal = password_refusal(settings.account(account_id)) if account_id else None
    if refusal:
        ctx.reply(refusal)
        return
    ctx.ack()
    try:
        open_modal(
            ctx.client,
            ctx.trigger_id,
            settings,
            PasswordModalOrigin(account_id=account_id, channel_id=ctx.channel_id),
        )
    except SlackApiError as exc:
        log.warning("views.open failed: %s", exc.response.get("error"))
        ctx.respond(
            text=f"Slack could not open the dialog ({exc.response.get('error')}): run `/atp password` again."
        )


class _FollowUp(ChangeProgress):
    def __init__(self, report: LiveReport) -> None:
        self.report = report

    def sensor_checked(self, result: SensorResult) -> None:
        self.report.add(result)

    def checks_done(self, results: Any) -> None:
        self.report.finish(results)

    def checks_failed(self, problem: str) -> bool:
        self.report.fail(problem)
        return True

    def not_using_dsa(self, names: Sequence[str]) -> None:
        self.report.note(f"Not checked, {NOT_USING_DSA}: {', '.join(names)}.")

    def graph_unread(self, line: str) -> None:
        self.report.note(line)


def run_change(
    services: Services,
    changes: PasswordChanges,
    view_id: str,
    user_id: str,
    actor: str,
    state: PasswordModalOrigin,
    submission: Submission,
    acked_at: float,
) -> None:
    """The slow part, on the bot's executor: the change path, then what Slack shows of it. Whatever
    fails, the modal never stays on "Testing…": the person is told what became of the password."""
    outcome: ChangeOutcome | None = None
    try:
        origin = slack_origin(user_id, state.channel_id)
        held: list[HeldRequest] = []
        hold = None
        if approval.needs_approval(services, submission.account_id):
            hold = approval.holder(services, Requester(user_id, actor, state.channel_id, view_id), held)
        outcome = changes.change(submission.account_id, submission.password, actor, origin=origin, hold=hold)
        if held:
            approval.ask_approvers(services, held[0], state.channel_id)
            show(services, view_id, user_id, state.channel_id, waiting_modal(held[0]), acked_at)
            return
        retry_state = PasswordModalOrigin(account_id=submission.account_id, channel_id=state.channel_id)
        username = services.settings.account(submission.account_id).username
        modal = result_modal(outcome, retry_state, username)
        show(services, view_id, user_id, state.channel_id, modal, acked_at)
        if outcome.saved_ok:
            announce_and_check(services, changes, outcome, user_id, state.channel_id)
    except Exception as exc:  # noqa: BLE001 - told, logged and audited
        saved = outcome is not None and outcome.saved_ok
        line = report_failure(
            services.audit,
            actor,
            AuditAction.CHANGE,
            submission.account_id,
            exc,
            doing=f"account {submission.account_id}: the password change from Slack",
            aftermath="the new password was saved" if saved else "nothing was saved",
        )
        text = (
            f":warning: *Saved*, but then something went wrong: {inline(line)}."
            if saved
            else f":warning: Something went wrong: {inline(line)}. Nothing was saved."
        )
        show(services, view_id, user_id, state.channel_id, notice_modal(TITLE, text), acked_at)


def announce_and_check(
    services: Services,
    changes: PasswordChanges,
    outcome: ChangeOutcome,
    user_id: str,
    channel_id: str,
    note: str | None = None,
) -> None:
    """After a save (at once, or once approved): tell the channel who changed which account, then run
    the follow-up checks in that message's thread. The actor of the checks is the one who saved. A save
    that waits for the portal step gets its checks when the step is confirmed (`portal.on_done`)."""
    channel = services.settings.slack.channel or channel_id
    text, blocks = announcement(outcome, f"<@{user_id}>", services.settings, note)
    thread = str(services.client.chat_postMessage(channel=channel, text=text, blocks=blocks)["ts"])
    if outcome.portal_pending and outcome.saved is not None:
        remember_thread(changes.portal, outcome.saved, MessageRef(channel=channel, ts=thread))
        return
    actor = outcome.saved.saved_by if outcome.saved is not None else f"slack:{user_id}"
    check_in_thread(services, changes, outcome.account_id, outcome.changed_at, actor, channel, thread)


def show(
    services: Services, view_id: str, user_id: str, channel_id: str, modal: dict[str, Any], acked_at: float
) -> None:
    """Put `modal` in place of "Testing…" (no sooner than ACK_SETTLE_SECONDS after the acknowledgement);
    if the person closed it or Slack refuses, tell them by an ephemeral message; failing that, log it."""
    time.sleep(max(0.0, acked_at + ACK_SETTLE_SECONDS - time.monotonic()))
    try:
        if update_view(services.client, view_id, modal):
            return
    except SlackApiError as exc:
        log.error("views.update failed: %s", exc.response.get("error"))
    text = "/atp password: " + " ".join(b["text"]["text"] for b in modal["blocks"] if b["type"] == "section")
    try:
        services.client.chat_postEphemeral(channel=channel_id, user=user_id, text=text)
    except SlackApiError as exc:
        log.error("could not tell %s the outcome of the change: %s", user_id, exc.response.get("error"))


def check_in_thread(
    services: Services,
    changes: PasswordChanges,
    account_id: str,
    changed_at: datetime | None,
    actor: str,
    channel: str,
    thread: str,
) -> None:
    """After a save: schedule the re-checks and run the follow-up checks, reported in `thread`."""
    client = services.client
    scope = changes.sensor_scope(account_id)
    sensors = scope.names
    if not sensors:
        unified = (
            f" Not checked, {NOT_USING_DSA}: {', '.join(scope.not_using_dsa)}." if scope.not_using_dsa else ""
        )
        text = "No sensors that use this account are configured." + escape(unified)
        client.chat_postMessage(channel=channel, thread_ts=thread, text=text)
        return
    if services.scheduler is not None and changed_at is not None:
        services.scheduler.schedule_rechecks(account_id, MessageRef(channel=channel, ts=thread), changed_at)
    heading = (
        f"*Follow-up checks* on {len(sensors)} sensor(s): service state, credential errors since the change"
    )
    report = thread_report(client, channel, thread, heading, len(sensors))
    changes.follow_up_checks(account_id, changed_at, actor, _FollowUp(report))


def tell_interrupted(services: Services, recoveries: Sequence[Recovery]) -> None:
    """Once Slack is connected after a start: tell the channel what became of each change a crash cut
    short; one whose save had landed gets what a saved change gets (re-checks, follow-up checks)."""
    for recovery in recoveries:
        origin = recovery.entry.origin
        channel = services.settings.slack.channel or origin_channel(origin)
        if channel is None:
            log.warning("account %s: no channel to tell about the interrupted change", recovery.account_id)
            continue
        text, blocks = interrupted_notice(recovery, origin_user(origin), services.settings)
        try:
            thread = str(services.client.chat_postMessage(channel=channel, text=text, blocks=blocks)["ts"])
            portal = services.changes.portal if services.changes is not None else None
            if recovery.saved is not None and portal is not None:  # checked once the portal step is done
                remember_thread(portal, recovery.saved, MessageRef(channel=channel, ts=thread))
            elif recovery.saved is not None and services.changes is not None:
                check_in_thread(
                    services,
                    services.changes,
                    recovery.account_id,
                    recovery.saved.saved_at,
                    recovery.entry.actor,
                    channel,
                    thread,
                )
        except (SlackApiError, ConfigError) as exc:
            log.error(
                "account %s: could not tell Slack about the interrupted change: %s", recovery.account_id, exc
            )


def on_submit(
    services: Services, ack: Ack, body: dict[str, Any], view: dict[str, Any], context: BoltContext
) -> None:
    user = body["user"]
    actor = interaction_actor(body, context)
    try:
        state = decode_metadata(PasswordModalOrigin, view["private_metadata"])
    except ValidationError:
        ack(
            response_action="update",
            view=notice_modal(TITLE, "This dialog is out of date: run `/atp password` again."),
        )
        return
    checked = validate(view["state"]["values"], state, services.settings)
    if not isinstance(checked, Submission):
        ack(response_action="errors", errors=checked)
        refusal = AuditEvent(
            actor=actor,
            action=AuditAction.CHANGE,
            account=state.account_id,
            outcome=AuditOutcome.REFUSED,
            reason="invalid-input",
            detail="; ".join(checked.values()),
        )
        services.audit.record(refusal)
        return
    changes = services.changes
    if changes is None:
        ack(
            response_action="update",
            view=notice_modal(TITLE, "This atp-bot runs without a credential store: nothing can be saved."),
        )
        return
    ack(response_action="update", view=testing_modal(services.settings.account(checked.account_id)))
    services.submit(
        run_change, services, changes, view["id"], user["id"], actor, state, checked, time.monotonic()
    )


def on_retry(services: Services, ack: Ack, body: dict[str, Any], context: BoltContext) -> None:
    ack()
    try:
        state = decode_metadata(PasswordModalOrigin, body["actions"][0]["value"])
    except ValidationError:
        return
    view_id = body["view"]["id"]

    def tell(text: str) -> None:  # in the modal the button is in
        update_view(services.client, view_id, notice_modal(TITLE, text))

    def retry() -> None:
        update_view(services.client, view_id, password_modal(services.settings, state))

    services.submit_for(_person(body, context, state.account_id, "Try again", tell), retry)


def on_open(services: Services, ack: Ack, body: dict[str, Any], context: BoltContext) -> None:
    """A button elsewhere (an alert) opens the modal for the account in its value. If Slack cannot open
    it, the person who clicked is told by an ephemeral message."""
    ack()
    account_id = body["actions"][0].get("value")
    if account_id not in {a.id for a in services.settings.accounts}:
        account_id = None
    channel = (body.get("channel") or {}).get("id") or services.settings.slack.channel or ""
    user_id = body["user"]["id"]

    def tell(text: str) -> None:
        services.client.chat_postEphemeral(channel=channel, user=user_id, text=text)

    def open_it() -> None:
        refusal = password_refusal(services.settings.account(account_id)) if account_id else None
        if refusal:  # a gMSA: nobody types its password
            tell(refusal)
            return
        state = PasswordModalOrigin(account_id=account_id, channel_id=channel)
        open_modal(services.client, body["trigger_id"], services.settings, state)

    services.run_for(_person(body, context, account_id, "Update password", tell), open_it)


def _person(
    body: dict[str, Any],
    context: BoltContext,
    account_id: str | None,
    button: str,
    tell: Callable[[str], None],
) -> Person:
    """Who clicked `button`, for telling and auditing a failure of what it started."""
    actor = interaction_actor(body, context)
    return Person(actor, AuditAction.CHANGE, account_id, f"the {button} button clicked by {actor}", tell)


SUBCOMMAND = Subcommand(
    name=NAME,
    summary="change a directory service account's password: tested, kept only if it passes, then "
    "saved by you in the Defender portal (the ATA Center's store: saved there)",
    handler=handle,
    usage="[account]",
)


def register(app: App, services: Services) -> None:
    authorized = [authorize_interaction(services, NAME)]

    def submitted(ack: Ack, body: dict[str, Any], view: dict[str, Any], context: BoltContext) -> None:
        on_submit(services, ack, body, view, context)

    def retry(ack: Ack, body: dict[str, Any], context: BoltContext) -> None:
        on_retry(services, ack, body, context)

    def open_from_button(ack: Ack, body: dict[str, Any], context: BoltContext) -> None:
        on_open(services, ack, body, context)

    def portal_done(ack: Ack, body: dict[str, Any]) -> None:
        portal.on_done(services, ack, body, check_in_thread)

    approval.register(app, services, announce_and_check)
    if services.approvals is not None:
        services.background.append(ExpirySweeper(services))
    app.view(Callback.MODAL, middleware=authorized)(submitted)
    app.action(Action.RETRY, middleware=authorized)(retry)
    app.action(Action.OPEN, middleware=authorized)(open_from_button)
    app.action(portal.DONE_ACTION, middleware=authorized)(portal_done)
