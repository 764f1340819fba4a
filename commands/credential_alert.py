"""The Slack alert of a Defender for Identity credential health issue (one per issue), and its closing reply.

Everything from Graph (the issue's name, domain and sensor names) is escaped; the buttons name only
configured accounts (those whose domains the issue names)."""

from __future__ import annotations

from typing import Any

from bot.monitor.models import CredentialIssueAlert
from bot.monitor.render import UNIFIED_SENSORS_REASON
from bot.slack.text import inline
from bot.slack.views import section
from commands.password.views import open_button

MAX_NAMES = 10  # domain and sensor names shown; the rest are counted
MAX_BUTTONS = 20  # one actions block per account: Slack wants action ids unique per block


def _names(names: tuple[str, ...]) -> str:
    shown = ", ".join(f"*{inline(n, 100)}*" for n in names[:MAX_NAMES])
    more = len(names) - MAX_NAMES
    return shown + (f" and {more} more" if more > 0 else "")


def _when(alert: CredentialIssueAlert) -> str:
    return f"{alert.closed_at:%Y-%m-%d %H:%M} UTC" if alert.closed_at else "unknown"


def credential_issue_message(alert: CredentialIssueAlert) -> tuple[str, list[dict[str, Any]]]:
    """The alert (the accounts, why unified sensors report it, *Update password* per account; a gMSA
    points to `gmsa check`), or once the issue is no longer open, the line that says so."""
    name = inline(alert.display_name, 200)
    if alert.closed:
        text = f":white_check_mark: Defender for Identity closed *{name}* (seen {_when(alert)})."
        return text, [section(text)]
    where = f" in {_names(alert.domains)}" if alert.domains else " (it names no domain)"
    sensors = f" Sensors named: {_names(alert.sensors)}." if alert.sensors else ""
    accounts = ", ".join(f"*{a}*" for a in (*alert.accounts, *alert.gmsa_accounts)) or "none of atp-bot's"
    text = (
        f":rotating_light: *Credential problem*: Defender for Identity reports *{name}*{where}: "
        f"directory service account(s) {accounts}. {UNIFIED_SENSORS_REASON}{sensors}"
    )
    lines = [
        f"• *{a}* is a gMSA: its password cannot be typed; run `atp-bot gmsa check --account {a}` "
        f"(or `/atp gmsa {a}`) instead."
        for a in alert.gmsa_accounts
    ]
    blocks = [section(text[:2900])]
    if lines:
        blocks.append(section("\n".join(lines)[:2900]))

    def label(account: str) -> str:
        return "Update password" if len(alert.accounts) == 1 else f"Update password: {account}"

    blocks += [
        {"type": "actions", "elements": [open_button(a, label(a))]} for a in alert.accounts[:MAX_BUTTONS]
    ]
    return "\n".join([text, *lines]), blocks
