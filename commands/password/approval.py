"""Two-person approval in Slack: the held request's message, its Approve / Deny / Cancel buttons, expiry.

`run_change` holds a tested password instead of saving it when the account needs approval; this module
asks the approvers (the channel, or each approver by DM), and an approver who is not the requester saves
it through the change path's `save_tested`: journal, store, audit, then the announcement and follow-up
checks as for any change. Every decision is the database's conditional update (bot.change.approvals), so any
replica can act on any click and a request is decided once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from pydantic import SecretStr
from slack_bolt import Ack, App
from slack_sdk.errors import SlackApiError

from bot.audit import AuditAction, AuditEvent, AuditOutcome
from bot.change import ChangeOutcome, ChangeStatus, Holder, PasswordChanges
from bot.change.approvals import ApprovalError, HeldRequest, Requester, RequestStatus, new_request_id
from bot.change.baseline import STALE, Baseline
from bot.config import SlackConfig
from bot.directory import ConnectionTestResult
from bot.monitor.models import MessageRef
from bot.slack.audit import slack_actor
from bot.slack.authz import Authorizer, Decision, click_counts
from bot.slack.context import Person, Services
from bot.slack.router import COMMAND
from bot.slack.text import inline
from bot.slack.views import notice_modal, update_view
from commands.password.approval_views import Action, decided_message, request_message
from commands.password.portal import portal_step_text
from commands.password.views import TITLE

log = logging.getLogger(__name__)

APPROVALS_ACTOR = "atp-bot:approvals"  # who expires a request


def needs_approval(services: Services, account_id: str) -> bool:
    return services.settings.approval_required(account_id)


def holder(services: Services, requester: Requester, held: list[HeldRequest]) -> Holder:
    """What the change path calls after a passed test: audit the request, then hold the password. Without
    held requests (a runtime built without them) it refuses: an account that needs approval is never
    saved without one."""
    approvals = services.approvals
    if approvals is None:
        raise ApprovalError("this account needs approval, but this atp-bot keeps no approval requests")

    def hold(test: ConnectionTestResult, password: SecretStr, baseline: Baseline) -> ChangeOutcome:
        request_id = new_request_id()
        requested = AuditEvent(
            actor=requester.actor,
            action=AuditAction.APPROVAL_REQUEST,
            account=test.account_id,
            outcome=AuditOutcome.OK,
            detail=f"request {request_id}; tested OK on {test.dc}",
        )
        services.audit.record(requested)
        held.append(approvals.hold(request_id, test.account_id, password, requester, test, baseline))
        return ChangeOutcome(
            test.account_id, ChangeStatus.HELD, "Tested OK; waiting for approval.", test=test
        )

    return hold


def _request_event(
    request: HeldRequest,
    actor: str,
    action: AuditAction,
    detail: str,
    *,
    outcome: AuditOutcome = AuditOutcome.OK,
    reason: str | None = None,
) -> AuditEvent:
    """The audit event of something done to a held request (it concerns the request's account)."""
    return AuditEvent(
        actor=actor, action=action, account=request.account_id, outcome=outcome, reason=reason, detail=detail
    )


def approvers(services: Services) -> Authorizer:
    """The approvers as an access policy (their users and user groups), checked like `allowed_users`."""
    config = services.settings.approvals
    policy = SlackConfig(allowed_users=config.approvers, allowed_usergroups=config.approver_usergroups)
    return Authorizer(policy, services.client)


# -- asking ---------------------------------------------------------------------------------------------


def ask_approvers(services: Services, request: HeldRequest, channel_id: str) -> None:
    """Post the request to the channel, or to each approver by DM, and remember where (for updates). If
    nobody can be asked, the request is withdrawn at once (its password deleted) and the error raised."""
    approvals = services.approvals
    assert approvals is not None
    text, blocks = request_message(request, services.settings)
    try:
        refs = [
            MessageRef(
                channel=channel,
                ts=str(services.client.chat_postMessage(channel=channel, text=text, blocks=blocks)["ts"]),
            )
            for channel in _destinations(services, channel_id)
        ]
    except Exception:
        if approvals.decide(request.id, RequestStatus.CANCELLED, APPROVALS_ACTOR) is not None:
            not_asked = f"request {request.id}: the approvers could not be asked"
            cancelled = _request_event(
                request,
                APPROVALS_ACTOR,
                AuditAction.APPROVAL_CANCEL,
                not_asked,
                outcome=AuditOutcome.ERROR,
                reason="slack",
            )
            services.audit.record(cancelled)
        raise
    approvals.set_messages(request.id, refs)


def _destinations(services: Services, channel_id: str) -> list[str]:
    settings = services.settings
    if settings.approvals.notify == "channel":
        return [settings.slack.channel or channel_id]
    users = set(settings.approvals.approvers)
    for group in settings.approvals.approver_usergroups:
        users |= set(services.client.usergroups_users_list(usergroup=group).get("users") or [])
    return [str(services.client.conversations_open(users=user)["channel"]["id"]) for user in sorted(users)]


# -- deciding -------------------------------------------------------------------------------------------


def _update_messages(services: Services, request: HeldRequest, what: str) -> None:
    text, blocks = decided_message(request, services.settings, what)
    for ref in request.messages:
        try:
            services.client.chat_update(channel=ref.channel, ts=ref.ts, text=text, blocks=blocks)
        except SlackApiError as exc:
            log.error("approval %s: could not update its message: %s", request.id, exc.response.get("error"))


def _tell_requester(services: Services, request: HeldRequest, text: str) -> None:
    """In the requester's modal if it is still open, else by an ephemeral message."""
    try:
        if update_view(services.client, request.view_id, notice_modal(TITLE, text)):
            return
    except SlackApiError as exc:
        log.error("approval %s: views.update failed: %s", request.id, exc.response.get("error"))
    try:
        services.client.chat_postEphemeral(channel=request.channel_id, user=request.requester, text=text)
    except SlackApiError as exc:
        log.error("approval %s: could not tell the requester: %s", request.id, exc.response.get("error"))


Announce = Callable[[Services, PasswordChanges, ChangeOutcome, str, str, str | None], None]


def _clicker(body: dict[str, Any]) -> tuple[str, str]:
    user = body["user"]
    return user["id"], slack_actor(user["id"], user.get("username") or user.get("name"))


def _refuse(services: Services, body: dict[str, Any], text: str) -> None:
    """An ephemeral refusal where the button was (a channel or DM message), else in the modal."""
    user_id = body["user"]["id"]
    channel = (body.get("channel") or {}).get("id")
    if channel:
        services.client.chat_postEphemeral(channel=channel, user=user_id, text=text)
    elif view := body.get("view"):
        update_view(services.client, view["id"], notice_modal(TITLE, text))


def _pending(services: Services, body: dict[str, Any], request_id: str) -> HeldRequest | None:
    """The request if it can still be decided; otherwise the clicker is told what became of it."""
    approvals = services.approvals
    assert approvals is not None
    request = approvals.get(request_id)
    if request is None:
        _refuse(services, body, "This approval request no longer exists (decided or expired).")
        return None
    if request.state is not RequestStatus.PENDING:
        _refuse(services, body, f"This request was already {request.state.value}; nothing more to do.")
        return None
    return request


def _posted_in(services: Services, request: HeldRequest) -> set[str]:
    """Where the request's Approve / Deny buttons count: where atp-bot posted them (the approvals channel,
    or each approver's direct message with the bot), and the approvals channel."""
    places = {ref.channel for ref in request.messages}
    settings = services.settings
    if settings.approvals.notify == "channel" and settings.slack.channel:
        places.add(settings.slack.channel)
    return places


def _refuse_elsewhere(
    services: Services, body: dict[str, Any], request: HeldRequest, event: AuditEvent
) -> None:
    """A click on a copy of the buttons: audited, and told where it was made if Slack lets us."""
    services.audit.record(event)
    try:
        _refuse(
            services,
            body,
            "This button counts only where atp-bot posted it: the approvals channel, or an approver's "
            "direct message with atp-bot. Nothing was changed.",
        )
    except SlackApiError as exc:
        log.info(
            "approval %s: could not tell who clicked elsewhere: %s", request.id, exc.response.get("error")
        )


def _may_decide(
    services: Services, body: dict[str, Any], request: HeldRequest, action: AuditAction
) -> Decision | None:
    """Only a click where atp-bot posted the buttons, by an approver who is not the requester, decides
    (the approver's access, with the user group that granted it); any other is audited and refused."""
    user_id, actor = _clicker(body)
    channel = (body.get("channel") or {}).get("id")
    if not click_counts(services.settings.slack, channel, _posted_in(services, request)):
        detail = f"request {request.id}; clicked in {channel or 'no channel'}"
        event = _request_event(
            request, actor, action, detail, outcome=AuditOutcome.DENIED, reason="channel not allowed"
        )
        _refuse_elsewhere(services, body, request, event)
        return None
    if user_id == request.requester:
        refusal = _request_event(
            request, actor, action, request.id, outcome=AuditOutcome.REFUSED, reason="self-approval"
        )
        services.audit.record(refusal)
        _refuse(services, body, ":no_entry: You asked for this change: another approver must decide it.")
        return None
    allowed = approvers(services).check("approve", user_id, None)
    if not allowed.allowed:
        denial = _request_event(
            request, actor, action, request.id, outcome=AuditOutcome.DENIED, reason=allowed.reason
        )
        services.audit.record(denial)
        _refuse(services, body, ":no_entry: Only an approver can approve or deny this request.")
        return None
    return allowed


def on_decision(
    services: Services, body: dict[str, Any], decision: RequestStatus, announce: Announce
) -> None:
    """Approve or Deny, on the executor: only an approver who is not the requester decides."""
    approvals, changes = services.approvals, services.changes
    assert approvals is not None and changes is not None
    user_id, actor = _clicker(body)
    action = AuditAction.APPROVE if decision is RequestStatus.APPROVED else AuditAction.DENY
    request = _pending(services, body, body["actions"][0].get("value") or "")
    allowed = None if request is None else _may_decide(services, body, request, action)
    if request is None or allowed is None:
        return
    if allowed.via:  # an approver through `approver_usergroups`: the group is audited too
        actor = slack_actor(user_id, body["user"].get("username") or body["user"].get("name"), allowed.via)
    decided = approvals.decide(request.id, decision, actor)
    if decided is None:
        _refuse(services, body, "This request was decided already, or it expired: nothing more to do.")
        return
    services.audit.record(_request_event(decided, actor, action, f"request {decided.id}"))
    if decision is RequestStatus.DENIED:
        what = f":no_entry_sign: Denied by <@{user_id}>: nothing was saved."
        _update_messages(services, decided, what)
        _tell_requester(services, decided, what)
        return
    _approve(services, changes, decided, user_id, actor, announce)


def _approve(
    services: Services,
    changes: PasswordChanges,
    request: HeldRequest,
    user_id: str,
    actor: str,
    announce: Announce,
) -> None:
    """Save the approved password through the change path, then tell the approvers and the requester;
    the announcement and follow-up checks are those of any saved change. A stale approval (the requester
    no longer allowed, the account changed since the test) saves nothing, and both are told why."""
    approvals = services.approvals
    assert approvals is not None
    password = approvals.open_approved(request)
    outcome = changes.save_tested(
        request.account_id,
        password,
        request.requester_actor,
        request.test,
        baseline=request.baseline,
        note=f"approved by {actor}",
        still_allowed=lambda: _requester_refusal(services, request),
        origin={"user": request.requester, "channel": request.channel_id},
    )
    mention = f"<@{user_id}>"
    if outcome.error_reason == STALE:
        what = f":no_entry: Approved by {mention}. {inline(outcome.message)}"
        _update_messages(services, request, what)
        _tell_requester(services, request, what)
        return
    if not outcome.saved_ok:
        what = f":warning: Approved by {mention}, but {inline(outcome.message)}"
        _update_messages(services, request, what)
        _tell_requester(services, request, what)
        return
    _update_messages(services, request, f":white_check_mark: Approved by {mention}: saved.")
    done = f":white_check_mark: *Saved.* Approved by {mention}; the channel has been told."
    portal = portal_step_text(services.settings.account(request.account_id).username)
    _tell_requester(services, request, done + (f"\n{portal}" if outcome.portal_pending else ""))
    announce(services, changes, outcome, request.requester, request.channel_id, f"Approved by {mention}")


def _requester_refusal(services: Services, request: HeldRequest) -> str | None:
    """Why the requester may no longer change passwords from where they asked, or None."""
    allowed = services.authorizer.check(f"{COMMAND} password", request.requester, request.channel_id)
    if allowed.allowed:
        return None
    return f"the requester {request.requester_actor} may no longer use {COMMAND} password ({allowed.reason})"


def on_cancel(services: Services, body: dict[str, Any]) -> None:
    """The requester withdraws their request from the waiting modal."""
    approvals = services.approvals
    assert approvals is not None
    user_id, actor = _clicker(body)
    request = _pending(services, body, body["actions"][0].get("value") or "")
    if request is None:
        return
    if user_id != request.requester:
        _refuse(services, body, ":no_entry: Only the person who asked can cancel this request.")
        return
    decided = approvals.decide(request.id, RequestStatus.CANCELLED, actor)
    if decided is None:
        _refuse(services, body, "This request was decided already, or it expired: nothing more to do.")
        return
    services.audit.record(
        _request_event(decided, actor, AuditAction.APPROVAL_CANCEL, f"request {decided.id}")
    )
    _update_messages(
        services, decided, f":heavy_multiplication_x: Cancelled by <@{user_id}>: nothing was saved."
    )
    _tell_requester(services, decided, ":heavy_multiplication_x: Request cancelled: nothing was saved.")


def sweep_expired(services: Services) -> int:
    """Expire every pending request whose time is up: the message says so, the requester is told, nothing
    is saved. Any replica may sweep: each request expires once. Returns how many this call expired."""
    approvals = services.approvals
    assert approvals is not None
    expired = 0
    for due in approvals.due():
        decided = approvals.decide(due.id, RequestStatus.EXPIRED, APPROVALS_ACTOR)
        if decided is None:
            continue
        expired += 1
        detail = f"request {decided.id} by {decided.requester_actor}"
        services.audit.record(_request_event(decided, APPROVALS_ACTOR, AuditAction.APPROVAL_EXPIRE, detail))
        what = (
            f":alarm_clock: Expired at {decided.expires_at:%H:%M} UTC without a decision: nothing was saved."
        )
        _update_messages(services, decided, what)
        _tell_requester(services, decided, what)
    approvals.purge_decided()
    return expired


def register(app: App, services: Services, announce: Announce) -> None:
    def person(body: dict[str, Any], button: str) -> Person:
        _, actor = _clicker(body)

        def tell(text: str) -> None:
            _refuse(services, body, text)

        return Person(actor, AuditAction.CHANGE, None, f"the {button} button clicked by {actor}", tell)

    def decision(state: RequestStatus, button: str) -> Callable[[Ack, dict[str, Any]], None]:
        def listener(ack: Ack, body: dict[str, Any]) -> None:
            ack()
            services.submit_for(person(body, button), lambda: on_decision(services, body, state, announce))

        return listener

    def cancel(ack: Ack, body: dict[str, Any]) -> None:
        ack()
        services.submit_for(person(body, "Cancel"), lambda: on_cancel(services, body))

    app.action(Action.APPROVE)(decision(RequestStatus.APPROVED, "Approve"))
    app.action(Action.DENY)(decision(RequestStatus.DENIED, "Deny"))
    app.action(Action.CANCEL)(cancel)
