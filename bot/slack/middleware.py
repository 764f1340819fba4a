"""Authorization and the rate limit of expensive requests as Bolt listener middleware: refusals are
acknowledged to the user and audited.

A listener middleware that does not call `next_()` must return the response for Slack (here: the
acknowledgement carrying the refusal); otherwise Bolt treats the request as unhandled.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, BoltContext, BoltResponse

from bot.audit import AuditEvent, AuditOutcome
from bot.slack.audit import ACCESS_VIA, interaction_actor, slack_actor
from bot.slack.authz import Decision
from bot.slack.context import Services
from bot.slack.ratelimit import Admission
from bot.slack.router import COMMAND, resolve
from bot.slack.views import notice_modal, view_channel

log = logging.getLogger(__name__)


def authorize_command(services: Services) -> Callable[..., BoltResponse | None]:
    """Middleware for `/atp`: sensitive subcommands run only for authorized users (and channels). The
    user group that granted access, if one did, is left in the Bolt context (`ACCESS_VIA`) for the
    audit trail."""

    def middleware(
        ack: Ack, command: dict[str, Any], context: BoltContext, next_: Callable[[], None]
    ) -> BoltResponse | None:
        subcommand = resolve(services, command.get("text") or "")
        if not subcommand.sensitive:
            next_()
            return None
        user_id, channel_id = command["user_id"], command["channel_id"]
        decision = services.authorizer.check(f"{COMMAND} {subcommand.name}", user_id, channel_id)
        if decision.allowed:
            context[ACCESS_VIA] = decision.via
            next_()
            return None
        _audit_refusal(
            services,
            slack_actor(user_id, command.get("user_name")),
            subcommand.name,
            decision,
            f"channel {channel_id}",
        )
        return ack(response_type="ephemeral", text=f":no_entry: {decision.message}")

    return middleware


def authorize_interaction(services: Services, action: str) -> Callable[..., BoltResponse | None]:
    """Middleware for a sensitive subcommand's view or action listener (membership, or the allowed
    channels, may have changed since the modal opened). A view submission is checked against the channel
    its modal was opened from (`ViewOrigin`; one that does not say is refused when channels are
    restricted). A refused view submission turns the modal into the refusal. As for commands, the user
    group that granted access is left in the Bolt context (`interaction_actor` reads it)."""

    def middleware(
        ack: Ack, body: dict[str, Any], context: BoltContext, next_: Callable[[], None]
    ) -> BoltResponse | None:
        user = body.get("user") or {}
        user_id = user.get("id", "")
        channel = (body.get("channel") or {}).get("id")
        if body.get("type") == "view_submission":
            channel = view_channel(body.get("view") or {}) or ""  # "": no channel is allowed
        decision = services.authorizer.check(f"{COMMAND} {action}", user_id, channel)
        if decision.allowed:
            context[ACCESS_VIA] = decision.via
            next_()
            return None
        actor = slack_actor(user_id, user.get("username") or user.get("name"))
        _audit_refusal(services, actor, action, decision, body.get("type"))
        if body.get("type") == "view_submission":
            return ack(
                response_action="update", view=notice_modal("Not allowed", f":no_entry: {decision.message}")
            )
        if channel and user_id:  # a button in a channel message: tell the person who clicked it
            text = f":no_entry: {decision.message}"
            services.submit(services.client.chat_postEphemeral, channel=channel, user=user_id, text=text)
        return ack()

    return middleware


def limit_expensive_command(services: Services) -> Callable[..., BoltResponse | None]:
    """Middleware for `/atp`, after `authorize_command`: an expensive subcommand over the person's
    `[slack] user_rate_per_minute` is answered with when to try again, and runs nothing."""

    def middleware(
        ack: Ack, command: dict[str, Any], context: BoltContext, next_: Callable[[], None]
    ) -> BoltResponse | None:
        subcommand = resolve(services, command.get("text") or "")
        if not subcommand.expensive:
            next_()
            return None
        user_id = command["user_id"]
        admission = services.rate_limit.admit(user_id)
        if admission.allowed:
            next_()
            return None
        actor = slack_actor(user_id, command.get("user_name"), context.get(ACCESS_VIA))
        return ack(response_type="ephemeral", text=_limited(services, actor, subcommand.name, admission))

    return middleware


def limit_expensive_interaction(services: Services, action: str) -> Callable[..., BoltResponse | None]:
    """Middleware for an expensive button (after `authorize_interaction`): over the limit, the person
    who clicked is told when to try again (ephemeral), and nothing runs."""

    def middleware(
        ack: Ack, body: dict[str, Any], context: BoltContext, next_: Callable[[], None]
    ) -> BoltResponse | None:
        user_id = (body.get("user") or {}).get("id", "")
        admission = services.rate_limit.admit(user_id)
        if admission.allowed:
            next_()
            return None
        text = _limited(services, interaction_actor(body, context), action, admission)
        if channel := (body.get("channel") or {}).get("id"):
            services.submit(services.client.chat_postEphemeral, channel=channel, user=user_id, text=text)
        return ack()

    return middleware


def _limited(services: Services, actor: str, action: str, admission: Admission) -> str:
    """The answer to a limited request; the first of a burst is audited, the rest only logged."""
    per_minute = services.rate_limit.per_minute
    if admission.first_refusal:
        limited = Decision(False, "rate limited", None)
        _audit_refusal(services, actor, action, limited, f"over {per_minute} expensive requests a minute")
    else:
        log.info("refused %s to %s: rate limited", action, actor)
    return (
        f"You have made {per_minute} requests that check the sensors or Graph in the last minute, "
        f"as many as one person may. Try again in {admission.retry_after} s."
    )


def _audit_refusal(
    services: Services, actor: str, action: str, decision: Decision, detail: str | None
) -> None:
    log.info("refused %s to %s: %s", action, actor, decision.reason)
    refusal = AuditEvent(
        actor=actor,
        action=action,
        account=None,
        outcome=AuditOutcome.DENIED,
        reason=decision.reason,
        detail=detail,
    )
    services.audit.record(refusal)
