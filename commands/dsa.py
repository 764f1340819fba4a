"""`/atp dsa [account]`: whether each directory service account is still needed or can be retired.

The same statuses as `atp-bot dsa status` (`bot.fleet.dsa_statuses`), from Graph's sensor list as the
runtime's `GraphFleet` caches it; built on the bot's executor, one run for identical requests in flight.
The monitor's notice when an account becomes removable is rendered here too (`removable_message`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from slack_bolt import App

from bot.audit import AuditAction, AuditEvent, AuditOutcome
from bot.config import ConfigError
from bot.fleet import REMOVAL_STEP, DsaStatus, dsa_statuses
from bot.monitor.models import DsaRemovableNotice
from bot.slack.context import CommandContext, Person, Reply, Services, Subcommand
from bot.slack.text import escape, inline
from bot.slack.views import section

NAME = "dsa"
MAX_ACCOUNTS = 40  # a message holds 50 blocks
VERDICT_MARK = {"needed": ":lock:", "removable": ":wastebasket:", "unknown": ":grey_question:"}


def handle(ctx: CommandContext) -> None:
    if len(ctx.args) > 1:
        ctx.reply("Usage: `/atp dsa [account]`")
        return
    account = ctx.args[0] if ctx.args else None
    if account is not None:
        try:
            ctx.services.settings.account(account)
        except ConfigError as exc:
            ctx.reply(inline("; ".join(exc.problems)))
            return
    ctx.reply(":hourglass_flowing_sand: Reading the sensors…")
    services = ctx.services

    def status(publish: Callable[[Reply], None]) -> None:
        run_status(services, lambda text, blocks: publish(Reply(text, blocks)), ctx.actor, account)

    doing = f"/atp dsa requested by {ctx.actor}"
    person = Person(ctx.actor, AuditAction.LISTING, account, doing, ctx.show_text)
    services.submit_shared((NAME, account or ""), person, status, ctx.show)


def _names(names: Sequence[str]) -> str:
    more = f" …and {len(names) - 20} more" if len(names) > 20 else ""
    return ", ".join(inline(n, 60) for n in names[:20]) + more


def account_block(status: DsaStatus) -> str:
    """One account: its verdict, the sensors by generation and the next step (Graph's names escaped)."""
    domains = ", ".join(inline(d) for d in status.domains) or "domain unknown"
    return (
        f"{VERDICT_MARK[status.verdict]} *{inline(status.account)}* ({domains}): *{status.verdict}*\n"
        f"Classic sensors (use it): {_names(status.classic_sensors) or '-'}\n"
        f"Unified sensors: {_names(status.unified_sensors) or '-'}\n"
        f"Next step: {inline(status.next_step, 1200)}"
    )


def message(statuses: Sequence[DsaStatus]) -> tuple[str, list[dict[str, Any]]]:
    counts = {v: sum(s.verdict == v for s in statuses) for v in VERDICT_MARK}
    summary = (
        f"*Directory service accounts*: {len(statuses)} — {counts['needed']} needed, "
        f"{counts['removable']} removable, {counts['unknown']} unknown"
    )
    blocks = [section(summary), *(section(account_block(s)[:2900]) for s in statuses[:MAX_ACCOUNTS])]
    return escape(summary), blocks


def run_status(
    services: Services, respond: Callable[[str, list[dict[str, Any]]], None], actor: str, account: str | None
) -> None:
    """On the bot's executor: Graph's sensors (cached), the statuses, one ephemeral answer, an audit row."""
    graph, graph_error = services.fleet.sensors()
    statuses = dsa_statuses(services.settings, graph, graph_error, account)
    respond(*message(statuses))
    counts = ", ".join(f"{s.account} {s.verdict}" for s in statuses)
    listed = AuditEvent(
        actor=actor,
        action=AuditAction.LISTING,
        account=account,
        outcome=AuditOutcome.OK,  # the statuses were shown; what they are is in the detail
        detail=f"directory service accounts shown: {counts}"[:500],
    )
    services.audit.record(listed)


def removable_message(notice: DsaRemovableNotice) -> str:
    """The monitor's notice: the account is used by no sensor any more."""
    unified = _names(notice.unified_sensors) or "-"
    return (
        f":wastebasket: Directory service account *{inline(notice.account_id)}* is no longer used: every "
        f"sensor of its domains is unified (v3): {unified}. {REMOVAL_STEP}"
    )


SUBCOMMAND = Subcommand(
    name=NAME,
    summary="the directory service accounts: classic sensors still using each, needed or removable",
    handler=handle,
    usage="[account]",
    expensive=True,
)


def register(app: App, services: Services) -> None:
    """`/atp dsa` has no interactions."""
