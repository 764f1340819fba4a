"""Block Kit of the two-person approval (pure): the approvers' message, its buttons, the requester's
waiting modal, the message once decided."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from bot.change.approvals import HeldRequest
from bot.config import Settings
from bot.slack.views import notice_modal, plain, section
from commands.password.views import TITLE, doubts


class Action(StrEnum):
    APPROVE = "atp_approval_approve"
    DENY = "atp_approval_deny"
    CANCEL = "atp_approval_cancel"


class Block(StrEnum):
    DECISION = "atp_approval_decision"
    CANCEL = "atp_approval_cancel_block"


def _request_line(request: HeldRequest, settings: Settings) -> str:
    account = settings.account(request.account_id)
    test = request.test
    expiry = test.expiry.describe() if test.expiry else "expiry unknown"
    return (
        f"<@{request.requester}> asks to save a new password for *{account.id}* (`{account.username}`) — "
        f"tested OK on `{test.dc}`, the password {expiry}"
    )


def _doubts(request: HeldRequest) -> str:
    """The test's warnings and notes, and what the approval cannot check again (bot.change.baseline)."""
    unchecked = request.baseline.unchecked if request.baseline else None
    return doubts(request.test, *([unchecked] if unchecked else []))


def request_message(request: HeldRequest, settings: Settings) -> tuple[str, list[dict[str, Any]]]:
    """The approvers' message: who asks, for which account, what the test found (with its warnings and
    notes, as the requester saw them); Approve / Deny."""
    line = f"{_request_line(request, settings)}.{_doubts(request)}"
    until = f"Approve or deny before {request.expires_at:%H:%M} UTC; nothing is saved until then."
    buttons = [
        {"type": "button", "action_id": Action.APPROVE, "text": plain("Approve"), "style": "primary"},
        {"type": "button", "action_id": Action.DENY, "text": plain("Deny"), "style": "danger"},
    ]
    for button in buttons:
        button["value"] = request.id
    return f":lock: {line}", [
        section(f":lock: {line}"),
        {"type": "context", "elements": [{"type": "mrkdwn", "text": until}]},
        {"type": "actions", "block_id": Block.DECISION, "elements": buttons},
    ]


def waiting_modal(request: HeldRequest) -> dict[str, Any]:
    text = (
        f":hourglass_flowing_sand: `{request.test.dc}` accepted the new password for *{request.account_id}*. "
        f"*Waiting for approval* (expires {request.expires_at:%H:%M} UTC): it is saved only once an approver "
        f"approves it.{_doubts(request)}"
    )
    modal = notice_modal(TITLE, text)
    cancel = {"type": "button", "action_id": Action.CANCEL, "text": plain("Cancel the request")}
    modal["blocks"].append(
        {"type": "actions", "block_id": Block.CANCEL, "elements": [{**cancel, "value": request.id}]}
    )
    return modal


def decided_message(request: HeldRequest, settings: Settings, what: str) -> tuple[str, list[dict[str, Any]]]:
    """The approvers' message once decided: the request, then `what` became of it."""
    text = f"{_request_line(request, settings)}.{_doubts(request)}\n{what}"
    return text, [section(text)]
