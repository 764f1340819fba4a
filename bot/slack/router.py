"""The one slash command, `/atp`: the first word picks the subcommand, unknown words get the usage."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, BoltContext, Respond
from slack_sdk import WebClient

from bot.change.failures import report_failure
from bot.slack.audit import ACCESS_VIA
from bot.slack.context import CommandContext, Services, Subcommand

COMMAND = "/atp"
HELP = "help"


def split_text(text: str) -> tuple[str, tuple[str, ...]]:
    """`"password Corp "` → `("password", ("corp",))`; the name is lower-cased, arguments are not."""
    words = text.split()
    if not words:
        return "", ()
    return words[0].lower(), tuple(words[1:])


def resolve(services: Services, text: str) -> Subcommand:
    """The subcommand the text names; `help` for a bare `/atp` or an unknown word."""
    name, _ = split_text(text)
    subcommand = services.registry.get(name) or services.registry.get(HELP)
    if subcommand is None:
        raise LookupError("no help subcommand is registered")
    return subcommand


def route(services: Services) -> Callable[..., None]:
    """The Bolt listener for `/atp`."""

    def atp(
        ack: Ack, command: dict[str, Any], respond: Respond, client: WebClient, context: BoltContext
    ) -> None:
        name, args = split_text(command.get("text") or "")
        ctx = CommandContext(
            name=name,
            args=args,
            user_id=command["user_id"],
            user_name=command.get("user_name"),
            channel_id=command["channel_id"],
            trigger_id=command["trigger_id"],
            response_url=command.get("response_url"),
            ack=ack,
            respond=respond,
            client=client,
            services=services,
            access_via=context.get(ACCESS_VIA),
        )
        subcommand = resolve(services, command.get("text") or "")
        try:
            subcommand.handler(ctx)
        except Exception as exc:  # noqa: BLE001 - told, logged and audited
            _went_wrong(ctx, subcommand.name, exc)
        if ack.response is None:
            ack()

    return atp


def _went_wrong(context: CommandContext, name: str, exc: Exception) -> None:
    """A handler failed unexpectedly: the person gets one line (as the acknowledgement if it was not
    sent yet), never silence; the failure is logged and audited."""
    services = context.services
    doing = f"{COMMAND} {name} by {context.actor}"
    line = report_failure(services.audit, context.actor, name, None, exc, doing=doing)
    text = f":warning: Something went wrong: {line}."
    if context.ack.response is None:
        context.reply(text)
    else:
        services.submit(context.respond, text=text, response_type="ephemeral")
