"""Checking a `/atp password` submission before anything is tested (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr

from bot.config import Settings, password_refusal
from bot.directory import password_problem
from commands.password.views import Action, Block, PasswordModalOrigin


@dataclass(frozen=True)
class Submission:
    account_id: str
    password: SecretStr


def _field(values: Any, block: Block, action: Action, key: str) -> Any:
    """`values[block][action][key]`, or None when Slack (or a forger) sent any other shape."""
    for step in (block, action, key):
        if not isinstance(values, dict):
            return None
        values = values.get(step)
    return values


def _text(values: Any, block: Block, action: Action) -> str:
    value = _field(values, block, action, "value")
    return value if isinstance(value, str) else ""


def validate(
    values: dict[str, Any], state: PasswordModalOrigin, settings: Settings
) -> Submission | dict[str, str]:
    """The submission, or inline errors by block id (Slack's `response_action: errors`)."""
    errors: dict[str, str] = {}
    account_id = state.account_id
    if account_id is None:
        selected = _field(values, Block.ACCOUNT, Action.ACCOUNT, "selected_option")
        chosen = selected.get("value") if isinstance(selected, dict) else None
        account_id = chosen if isinstance(chosen, str) else None
    if account_id is None or account_id not in {a.id for a in settings.accounts}:
        errors[Block.ACCOUNT] = "Choose a configured account."
    elif refusal := password_refusal(settings.account(account_id)):
        errors[Block.ACCOUNT] = refusal
    password = _text(values, Block.PASSWORD, Action.PASSWORD)
    confirm = _text(values, Block.CONFIRM, Action.CONFIRM)
    problem = password_problem(password)
    if problem:
        errors[Block.PASSWORD] = problem
    elif not confirm:
        errors[Block.CONFIRM] = "Type the new password again to confirm it."
    elif confirm != password:
        errors[Block.CONFIRM] = "The two passwords do not match."
    if errors or account_id is None:
        return errors
    return Submission(account_id, SecretStr(password))
