"""`/atp help` (and any unknown subcommand): an ephemeral usage listing of the subcommands."""

from __future__ import annotations

from typing import Any

from slack_bolt import App

from bot.slack.context import CommandContext, Registry, Services, Subcommand
from bot.slack.router import COMMAND, HELP
from bot.slack.views import section


def usage_lines(registry: Registry) -> list[str]:
    lines = []
    for subcommand in registry:
        words = " ".join(part for part in (COMMAND, subcommand.name, subcommand.usage) if part)
        lines.append(f"`{words}` — {subcommand.summary}")
    return lines


def usage_message(registry: Registry, unknown: str | None = None) -> tuple[str, list[dict[str, Any]]]:
    """The usage text (with a first line about `unknown` if the user typed a word we do not know)."""
    lines = usage_lines(registry)
    heading = f"`{COMMAND} {unknown}` is not a subcommand. " if unknown else ""
    heading += f"Usage of `{COMMAND}`:"
    text = "\n".join([heading, *lines])
    return text, [section(heading), section("\n".join(lines))]


def handle(ctx: CommandContext) -> None:
    unknown = ctx.name if ctx.name not in ("", HELP) and ctx.services.registry.get(ctx.name) is None else None
    text, blocks = usage_message(ctx.services.registry, unknown)
    ctx.reply(text, blocks)


SUBCOMMAND = Subcommand(name=HELP, summary="show this list of subcommands", handler=handle, sensitive=False)


def register(app: App, services: Services) -> None:
    """`/atp help` has no interactions."""
