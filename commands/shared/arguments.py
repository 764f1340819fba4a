"""Arguments shared by several `/atp` subcommands (pure)."""

from __future__ import annotations

from collections.abc import Sequence

from bot.config import Settings


def account_argument(settings: Settings, args: Sequence[str]) -> tuple[str | None, str | None]:
    """The account id typed after the subcommand (ids are lower-case; so is the match) and an error.

    `(None, None)` when none was typed; `(None, message)` when it names no configured account.
    """
    if not args:
        return None, None
    wanted = args[0].lower()
    ids = [a.id for a in settings.accounts]
    if wanted not in ids:
        return None, f"There is no account `{args[0]}`. Configured accounts: {', '.join(ids)}."
    return wanted, None
