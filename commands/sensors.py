"""`/atp sensors [domain]`: every sensor (Graph and `[[sensors]]`) as a compact table, unhealthy first.

The same rows as `atp-bot sensors`; Graph's list is cached by the runtime's `GraphFleet`, so a burst of
requests makes one Graph call. Built on the bot's executor, the WinRM checks done by the bot's check
workers (they can take a while); the ephemeral "Listing…" reply is replaced by the table.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from slack_bolt import App

from bot.audit import AuditAction, AuditEvent, AuditOutcome
from bot.config import ConfigError
from bot.fleet import (
    SensorRow,
    build_rows,
    check_hosts,
    in_domain,
    merge_fleet,
    unhealthy_first,
)
from bot.sensors import SensorChecker, check_sensors
from bot.slack.context import CommandContext, Person, Reply, Services, Subcommand
from bot.slack.text import code_block, escape, inline
from bot.slack.views import section

NAME = "sensors"
MAX_ROWS = 40  # a section holds 3000 characters: the healthy rest is summarised
VERDICT_MARK = {"attention": "!!", "unknown": "??", "healthy": "ok"}


def handle(ctx: CommandContext) -> None:
    domain = ctx.args[0] if ctx.args else None
    if len(ctx.args) > 1:
        ctx.reply("Usage: `/atp sensors [domain]`")
        return
    ctx.reply(":hourglass_flowing_sand: Listing the sensors…")
    services = ctx.services

    def listing(publish: Callable[[Reply], None]) -> None:
        run_listing(
            services, lambda **shown: publish(Reply(shown["text"], shown.get("blocks"))), ctx.actor, domain
        )

    person = Person(
        ctx.actor, AuditAction.LISTING, None, f"/atp sensors requested by {ctx.actor}", ctx.show_text
    )
    services.submit_shared((NAME, (domain or "").lower()), person, listing, ctx.show)


HEADER = f"{'':2} {'SENSOR':<24} {'GEN':<8} {'DSA':<6} {'HEALTH':<16} DEPLOYMENT"


def table(rows: Sequence[SensorRow]) -> str:
    """Fixed-width lines under a header: verdict, name, generation, whether it uses the DSA, Graph's
    health and deployment status."""
    lines = [HEADER]
    lines += [
        f"{VERDICT_MARK[r.verdict]} {r.name[:24]:<24} v{r.generation:<7} "
        f"{'DSA' if r.uses_dsa else 'no DSA' if r.uses_dsa is False else 'DSA ?':<6} "
        f"{(r.health_status or '-')[:16]:<16} {r.deployment_status or '-'}"
        for r in rows[:MAX_ROWS]
    ]
    if len(rows) > MAX_ROWS:
        lines.append(f"…and {len(rows) - MAX_ROWS} more")
    return "\n".join(lines)


def problems(rows: Sequence[SensorRow]) -> str:
    found = [f"*{inline(r.name, 60)}*: {inline('; '.join(r.problems), 300)}" for r in rows if r.problems]
    return "\n".join(found[:15]) + (f"\n…and {len(found) - 15} more" if len(found) > 15 else "")


def message(rows: Sequence[SensorRow], graph_error: str | None) -> tuple[str, list[dict[str, Any]]]:
    ordered = unhealthy_first(rows)
    counts = {v: sum(r.verdict == v for r in rows) for v in VERDICT_MARK}
    summary = (
        f"*Sensors*: {len(rows)} — {counts['attention']} need attention, {counts['unknown']} unknown, "
        f"{counts['healthy']} healthy"
    )
    blocks = [section(summary)]
    if graph_error is not None:
        blocks.append(section(f":warning: Graph could not be used: {inline(graph_error)}"))
    if ordered:
        blocks.append(section(code_block(table(ordered))))
    if details := problems(ordered):
        blocks.append(section(details[:2900]))
    return escape(summary), blocks


def _checker(services: Services) -> SensorChecker:
    """The bot's checker (its check worker processes), so that no WinRM work runs in the bot's threads."""
    return services.changes.checker if services.changes else check_sensors


def run_listing(services: Services, respond: Callable[..., object], actor: str, domain: str | None) -> None:
    """On the bot's executor: Graph (cached), the WinRM checks, then one ephemeral table."""
    graph, graph_error = services.fleet.sensors()
    members = merge_fleet(services.settings, graph)
    if domain:
        members = [m for m in members if in_domain(m, domain)]
    try:
        rows = build_rows(members, check_hosts(services.settings, members, _checker(services)))
    except ConfigError as exc:
        respond(
            text=f"The sensors could not be listed: {inline('; '.join(exc.problems))}", replace_original=True
        )
        return
    text, blocks = message(rows, graph_error)
    respond(text=text, blocks=blocks, response_type="ephemeral", replace_original=True)
    counts = {v: sum(r.verdict == v for r in rows) for v in VERDICT_MARK}
    listed = AuditEvent(
        actor=actor,
        action=AuditAction.LISTING,
        account=None,
        outcome=AuditOutcome.OK,  # the listing was shown; what it found is in the detail
        detail=f"{len(rows)} sensors listed: {counts['attention']} need attention, {counts['unknown']} "
        f"unknown, {counts['healthy']} healthy",
    )
    services.audit.record(listed)


SUBCOMMAND = Subcommand(
    name=NAME,
    summary="list every sensor (Graph and configured): generation, health, unhealthy first",
    handler=handle,
    usage="[domain]",
    expensive=True,
)


def register(app: App, services: Services) -> None:
    """`/atp sensors` has no interactions."""
