"""`/atp history [account]`: the latest audit events, shown only to the person who asked."""

from __future__ import annotations

from slack_bolt import App

from bot.audit import AuditAction, AuditEvent, AuditOutcome
from bot.audit.view import format_history
from bot.slack.context import CommandContext, Services, Subcommand
from bot.slack.text import code_block, escape
from bot.slack.views import section
from commands.shared.arguments import account_argument

NAME = "history"
LIMIT = 20
# Refusals (anyone in the workspace can cause them) are read apart, so that they never push real events
# out of the last LIMIT.
REFUSALS_SHOWN = 5


def handle(ctx: CommandContext) -> None:
    changes = ctx.services.changes
    if changes is None:
        ctx.reply("This atp-bot runs without an audit trail.")
        return
    account, error = account_argument(ctx.services.settings, ctx.args)
    if error:
        ctx.reply(error)
        return
    rows = changes.audit.recent(account, LIMIT, denied=False)
    refusals = changes.audit.recent(None, REFUSALS_SHOWN, denied=True)
    listing = format_history(rows, account, refusals)
    ctx.reply(escape(listing), [section(code_block(listing))])  # audit details quote AD and store errors
    shown = AuditEvent(
        actor=ctx.actor,
        action=AuditAction.HISTORY,
        account=account,
        outcome=AuditOutcome.OK,
        detail=f"{len(rows)} events shown",
    )
    ctx.services.audit.record(shown)


SUBCOMMAND = Subcommand(
    name=NAME,
    summary="show recent audit events (who tested, saved, checked)",
    handler=handle,
    usage="[account]",
)


def register(app: App, services: Services) -> None:
    """`/atp history` has no interactions."""
