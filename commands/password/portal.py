"""The portal step in Slack: what the modal and the channel message say after a save that Defender for
Identity does not have yet, and the *Done in the portal* button. Any person allowed to change passwords
may click it; the change path confirms the step once (`bot.change.portal`) and audits it as
`portal-updated`; the follow-up checks then run in the message's thread."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from slack_bolt import Ack

from bot.audit import AuditAction
from bot.change import PasswordChanges
from bot.change.portal import PORTAL_PATH, PORTAL_URL, confirm_step
from bot.slack.audit import slack_actor
from bot.slack.context import Person, Services
from bot.slack.views import plain

log = logging.getLogger(__name__)

DONE_ACTION = "atp_password_portal_done"
DONE_BLOCK = "atp_password_portal"

# check_in_thread(services, changes, account_id, since, actor, channel, thread): the follow-up checks.
FollowUps = Callable[[Services, PasswordChanges, str, datetime, str, str, str], None]


def portal_step_text(username: str) -> str:
    """The step, in mrkdwn: where to go, what to do, and the link."""
    return (
        f"*Defender for Identity does not have it yet:* save it in the portal now. "
        f"{PORTAL_PATH} > `{username}` > new password > *Save* (<{PORTAL_URL}|open the page>). "
        "Until then every sensor keeps using the old password."
    )


def modal_step(username: str) -> dict[str, Any]:
    """The modal's block after a save that waits for the portal step."""
    then = (
        "Then click *Done in the portal* in the channel message: the sensors are checked from then on "
        "(or as soon as atp-bot sees Defender for Identity use the new password)."
    )
    return {
        "type": "section",
        "text": {"type": "mrkdwn", "text": f":hourglass: {portal_step_text(username)}\n{then}"},
    }


def waiting_blocks(account_id: str, username: str, saved_at: datetime) -> list[dict[str, Any]]:
    """The channel message's part while the step is pending: the step and the button."""
    since = f":hourglass: *Waiting for the portal* since {saved_at:%H:%M} UTC. {portal_step_text(username)}"
    button = {
        "type": "button",
        "action_id": DONE_ACTION,
        "text": plain("Done in the portal"),
        "style": "primary",
        "value": json.dumps({"account": account_id, "saved_at": saved_at.isoformat()}),
    }
    return [
        {"type": "context", "elements": [{"type": "mrkdwn", "text": since}]},
        {"type": "actions", "block_id": DONE_BLOCK, "elements": [button]},
    ]


def done_blocks(blocks: list[dict[str, Any]], who: str, at: datetime) -> list[dict[str, Any]]:
    """The channel message once the step is confirmed: the button replaced by who confirmed it and when."""
    kept = [b for b in blocks if b.get("block_id") != DONE_BLOCK and not _waiting(b)]
    done = f":white_check_mark: *Done in the portal*: confirmed by {who} at {at:%H:%M} UTC."
    return [*kept, {"type": "context", "elements": [{"type": "mrkdwn", "text": done}]}]


def _waiting(block: dict[str, Any]) -> bool:
    elements = block.get("elements") or [{}]
    return block.get("type") == "context" and "*Waiting for the portal*" in str(elements[0].get("text"))


def _button_value(value: object) -> tuple[str, datetime | None]:
    """(account id, the save's time) from the button's value; ("", None) when it is not ours."""
    try:
        data = json.loads(str(value))
        return str(data["account"]), datetime.fromisoformat(str(data["saved_at"]))
    except (ValueError, TypeError, KeyError):
        return "", None


def on_done(services: Services, ack: Ack, body: dict[str, Any], follow_ups: FollowUps) -> None:
    """The *Done in the portal* button (the middleware already checked the person may change passwords)."""
    ack()
    user = body["user"]
    actor = slack_actor(user["id"], user.get("username") or user.get("name"))
    account_id, saved_at = _button_value(body["actions"][0].get("value"))
    channel = (body.get("channel") or {}).get("id") or ""
    message = body.get("message") or {}

    def tell(text: str) -> None:
        services.client.chat_postEphemeral(channel=channel, user=user["id"], text=text)

    def confirm() -> None:
        changes = services.changes
        known = account_id in {a.id for a in services.settings.accounts}
        if changes is None or changes.portal is None or not known or saved_at is None:
            tell("Nothing is waiting for the portal step here.")
            return
        now = datetime.now(UTC)
        step = confirm_step(changes.portal, services.audit, account_id, actor, now, saved_at=saved_at)
        if step is None or step.confirmed_at is None:
            tell(
                f"Nothing is waiting for the portal step of this save of *{account_id}*: it was confirmed "
                "already, or a newer password was saved since."
            )
            return
        blocks = done_blocks(list(message.get("blocks") or []), f"<@{user['id']}>", step.confirmed_at)
        text = str(message.get("text") or "")
        services.client.chat_update(channel=channel, ts=message["ts"], text=text, blocks=blocks)
        follow_ups(services, changes, account_id, step.confirmed_at, actor, channel, str(message["ts"]))

    doing = f"the Done in the portal button clicked by {actor}"
    services.submit_for(Person(actor, AuditAction.PORTAL_UPDATED, account_id, doing, tell), confirm)
