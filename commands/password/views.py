"""Block Kit for `/atp password`: the modal in each of its states and the channel messages (pure)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from bot.change import ChangeOutcome, ChangeStatus, Recovery, Verdict
from bot.change.portal import portal_step_needed
from bot.config import AccountConfig, ConfigError, Settings
from bot.directory import ConnectionTestResult
from bot.slack.text import inline
from bot.slack.views import ViewOrigin, encode_metadata, notice_modal, plain, section
from commands.password.portal import modal_step, waiting_blocks

TITLE = "Directory password"
MAX_DOUBTS = 4  # warnings and notes shown with a test's outcome


class Callback(StrEnum):
    MODAL = "atp_password_modal"


class Block(StrEnum):
    ACCOUNT = "atp_password_account"
    PASSWORD = "atp_password_new"
    CONFIRM = "atp_password_confirm"
    RESULT_ACTIONS = "atp_password_result_actions"


class Action(StrEnum):
    ACCOUNT = "atp_password_account_select"
    PASSWORD = "atp_password_new_input"
    CONFIRM = "atp_password_confirm_input"
    RETRY = "atp_password_retry"
    OPEN = "atp_password_open"  # a button elsewhere (e.g. an alert) that opens the modal; value: account id


def open_button(account_id: str | None, label: str = "Update password") -> dict[str, Any]:
    """A button (in an alert) that opens this modal for the account; without one, the user picks it."""
    account = {"value": account_id} if account_id else {}
    return {
        "type": "button",
        "style": "primary",
        "action_id": Action.OPEN,
        "text": plain(label[:75]),
        **account,
    }


class PasswordModalOrigin(ViewOrigin):
    """What the modal carries in `private_metadata`: never the password."""

    account_id: str | None  # None: several accounts, the user picks one in the modal


def _account_option(account: AccountConfig) -> dict[str, Any]:
    return {"text": plain(f"{account.id} ({account.username})"[:75]), "value": account.id}


def _what_happens(settings: Settings) -> str:
    tested = "atp-bot first tests the password against the account's domain controllers. "
    told = "The channel is told who changed which account (never the password)"
    if not portal_step_needed(settings):
        return f"{tested}It is saved only if the test passes. {told}, and every sensor of it is checked."
    return (
        f"{tested}It is kept in atp-bot's {settings.store.backend} store only if the test passes; Defender "
        f"for Identity gets it when you then save it in the portal (atp-bot says how). {told}, and every "
        "sensor that uses the account is checked once the portal step is done."
    )


def password_modal(settings: Settings, state: PasswordModalOrigin) -> dict[str, Any]:
    """Account (a select when several are configured), new password, confirmation, and what happens next."""
    blocks: list[dict[str, Any]] = []
    if state.account_id is None:
        options = [_account_option(a) for a in settings.accounts]
        blocks.append(
            {
                "type": "input",
                "block_id": Block.ACCOUNT,
                "label": plain("Directory service account"),
                "element": {"type": "static_select", "action_id": Action.ACCOUNT, "options": options},
            }
        )
    else:
        account = settings.account(state.account_id)
        blocks.append(section(f"Account *{account.id}*: `{account.username}`"))
    for block, action, label in (
        (Block.PASSWORD, Action.PASSWORD, "New password"),
        (Block.CONFIRM, Action.CONFIRM, "Confirm the new password"),
    ):
        blocks.append(
            {
                "type": "input",
                "block_id": block,
                "label": plain(label),
                "element": {"type": "plain_text_input", "action_id": action, "max_length": 3000},
            }
        )
    blocks.append(
        {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": _what_happens(settings),
                }
            ],
        }
    )
    return {
        "type": "modal",
        "callback_id": Callback.MODAL,
        "title": plain(TITLE),
        "submit": plain("Test and save"),
        "close": plain("Cancel"),
        "private_metadata": encode_metadata(state),
        "blocks": blocks,
    }


def testing_modal(account: AccountConfig) -> dict[str, Any]:
    return notice_modal(
        TITLE,
        f":hourglass_flowing_sand: Testing the connection for *{account.id}* (`{account.username}`) "
        "against its domain controllers…",
    )


def _retry_button(state: PasswordModalOrigin) -> dict[str, Any]:
    return {
        "type": "actions",
        "block_id": Block.RESULT_ACTIONS,
        "elements": [
            {
                "type": "button",
                "action_id": Action.RETRY,
                "text": plain("Try again"),
                "value": encode_metadata(state),
            }
        ],
    }


def doubts(test: ConnectionTestResult, *notes: str) -> str:
    """The test's warnings (e.g. no KDC confirmed a password changed in AD minutes ago), then its notes and
    `notes` (e.g. what an approval cannot check), one line each: what the requester saw, others see."""
    lines = [f":warning: {inline(warning)}" for warning in test.warnings]
    lines += [f":information_source: {inline(note)}" for note in (*test.notes, *notes)]
    if len(lines) > MAX_DOUBTS:  # a section holds 3,000 characters; each line at most about 520
        lines[MAX_DOUBTS - 1 :] = [f"… and {len(lines) - MAX_DOUBTS + 1} more"]
    return "".join(f"\n{line}" for line in lines)


def result_modal(
    outcome: ChangeOutcome, state: PasswordModalOrigin, username: str | None = None
) -> dict[str, Any]:
    """The modal after the change: saved (and the portal step, with the account's `username`), or why
    not (with a way to try again)."""
    test = outcome.test
    if outcome.status is ChangeStatus.SAVED and test is not None:
        expiry = test.expiry.describe() if test.expiry else "expiry unknown"
        kept = "kept" if outcome.portal_pending else "saved"
        where = f"{kept} in the {outcome.saved.backend} store" if outcome.saved else "saved"
        checked = "" if outcome.portal_pending else ", and the sensors are being checked"
        text = (
            f":white_check_mark: *Saved.* `{test.dc}` accepted the new password for *{outcome.account_id}*; "
            f"it {expiry}. Tested and {where}.\nThe channel has been told{checked}."
        )
        if outcome.problem:
            text += f"\n:warning: But then something went wrong: {inline(outcome.problem)}."
        modal = notice_modal(TITLE, text + doubts(test))
        if outcome.portal_pending and username is not None:
            modal["blocks"].append(modal_step(username))
        return modal
    if outcome.status is ChangeStatus.SAVE_FAILED:
        why = outcome.message.removeprefix("Tested OK but NOT saved: ")
        text = f":warning: *Tested OK but NOT saved.* {inline(why)}"
    elif outcome.status is ChangeStatus.FAILED:
        text = f":warning: {inline(outcome.message)}"
    elif outcome.status is ChangeStatus.TEST_FAILED and test is not None:
        reason = f" (`{test.reason}`)" if test.reason else ""
        text = f":x: *Not saved.* {inline(test.message)}{reason}\nNothing was changed."
    else:
        text = f":no_entry: *Not saved.* {inline(outcome.message)}"
    modal = notice_modal(TITLE, text)
    modal["blocks"].append(_retry_button(state))
    return modal


def announcement(
    outcome: ChangeOutcome, who: str, settings: Settings, note: str | None = None
) -> tuple[str, list[dict[str, Any]]]:
    """The channel message after a saved change: `who` (a Slack mention, or the CLI's actor in code
    quotes) changed which account; never the secret. The CLI posts the same text. `note`: who approved
    it, or that it was a break-glass change and why (mrkdwn, already escaped: it may hold a mention)."""
    account = settings.account(outcome.account_id)
    test, saved = outcome.test, outcome.saved
    expiry = test.expiry.describe() if test and test.expiry else "expiry unknown"
    text = (
        f":key: {who} changed the directory service account password for *{account.id}* "
        f"(`{account.username}`)."
    )
    details = f"Verified by `{test.dc if test else '?'}`; the password {expiry}."
    if saved and outcome.portal_pending:
        details += (
            f" Tested and kept in the {saved.backend} store; Defender for Identity gets it when you save it "
            "in the portal."
        )
    elif saved:
        details += f" Saved in the {saved.backend} store."
    if note:
        details += f" {note}."
    if test:
        details += doubts(test)
    blocks = [section(text), {"type": "context", "elements": [{"type": "mrkdwn", "text": details}]}]
    if saved and outcome.portal_pending:
        blocks += waiting_blocks(account.id, account.username, saved.saved_at)
        details += f" Waiting for the portal since {saved.saved_at:%H:%M} UTC."
    return f"{text} {details}", blocks


def interrupted_notice(
    recovery: Recovery, user_id: str | None, settings: Settings
) -> tuple[str, list[dict[str, Any]]]:
    """The channel message when a restart finds a change that a crash cut short: what became of it and
    what to do now. `user_id` is who started it in Slack (None: it was started elsewhere, e.g. the CLI)."""
    entry = recovery.entry
    try:
        account = f"*{entry.account_id}* (`{settings.account(entry.account_id).username}`)"
    except ConfigError:  # the account was removed from the configuration meanwhile
        account = f"*{entry.account_id}*"
    who = f"<@{user_id}>" if user_id else f"`{entry.actor}`"
    what = (
        f"The password change of {account} started by {who} at {entry.started_at:%H:%M} UTC "
        "was interrupted by a restart"
    )
    again = f"run `/atp password {entry.account_id}` again"
    blocks: list[dict[str, Any]] = []
    if recovery.verdict is Verdict.SAVED and recovery.saved is not None:
        text = (
            f":key: {what}, but the new password had been saved "
            f"({recovery.saved.backend} store, {recovery.saved.saved_at:%H:%M} UTC). "
            "The follow-up checks run now."
        )
        if portal_step_needed(settings) and entry.account_id in {a.id for a in settings.accounts}:
            username = settings.account(entry.account_id).username
            text = text.removesuffix("The follow-up checks run now.") + (
                "Defender for Identity gets it when it is saved in the portal too; the follow-up checks run "
                "once that is done."
            )
            blocks = waiting_blocks(entry.account_id, username, recovery.saved.saved_at)
    elif recovery.verdict is Verdict.UNCONFIRMED:
        text = (
            f":warning: {what} while the {entry.backend} store was saving it, and the store never "
            f"confirmed the save. The previous password may still be in use: check the store, or {again}."
        )
    else:
        text = f":warning: {what} before it was saved. The previous password is still in use: {again}."
    details = "Recorded in the audit trail (`/atp history`)."
    return f"{text} {details}", [
        section(text),
        {"type": "context", "elements": [{"type": "mrkdwn", "text": details}]},
        *blocks,
    ]
