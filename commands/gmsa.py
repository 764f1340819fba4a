"""`/atp gmsa [account]`: the gMSA checks of `atp-bot gmsa check`, shown to the person who asked."""

from __future__ import annotations

from collections.abc import Callable

from slack_bolt import App

from bot.audit import AuditAction
from bot.config import AccountConfig, ConfigError, Settings
from bot.gmsa import check_gmsa, describe, sensor_scope
from bot.slack.context import CommandContext, Person, Services, Subcommand, publish_text
from commands.shared.arguments import account_argument

NAME = "gmsa"


def _chosen(settings: Settings, account_id: str | None) -> AccountConfig | str:
    """The gMSA account to check, or what to tell the person."""
    gmsas = [a for a in settings.accounts if a.kind == "gmsa"]
    if account_id is not None:
        account = settings.account(account_id)
        return account if account.kind == "gmsa" else f"Account `{account_id}` is not a gMSA."
    if len(gmsas) == 1:
        return gmsas[0]
    if not gmsas:
        return 'No account is a gMSA (`kind = "gmsa"`).'
    return f"Name the gMSA account: `/atp gmsa {gmsas[0].id}` ({', '.join(a.id for a in gmsas)})."


def handle(ctx: CommandContext) -> None:
    settings = ctx.services.settings
    account_id, error = account_argument(settings, ctx.args)
    chosen = error or _chosen(settings, account_id)
    if isinstance(chosen, str):
        ctx.reply(chosen)
        return
    ctx.reply(f":hourglass_flowing_sand: Checking the gMSA {chosen.username} of account `{chosen.id}`…")
    services = ctx.services

    def tell(text: str) -> None:
        ctx.respond(text=text, response_type="ephemeral", replace_original=True)

    # An unexpected failure replaces the hourglass with one line (and is audited), never leaves it.
    person = Person(ctx.actor, AuditAction.CHECK, chosen.id, f"/atp gmsa requested by {ctx.actor}", tell)
    services.submit_shared(
        (NAME, chosen.id), person, lambda publish: run_check(services, chosen, publish_text(publish))
    )


def run_check(services: Services, account: AccountConfig, tell: Callable[[str], None]) -> None:
    """On the bot's executor: read Graph (cached) and AD, then replace the ephemeral reply with the
    verdicts."""
    settings = services.settings
    try:
        scripts = services.changes.scripts if services.changes else None  # the bot's check workers
        report = check_gmsa(
            settings, account, sensor_scope(settings, account, services.fleet), scripts=scripts
        )
        text = "```" + "\n".join(describe(report)) + "```"
    except ConfigError as error:  # e.g. the lookup password's variable is not set
        text = f"The gMSA check of `{account.id}` cannot run: {'; '.join(error.problems)}"
    tell(text)


SUBCOMMAND = Subcommand(
    name=NAME,
    summary="check a gMSA account: who may retrieve its password, KDS root key, encryption types",
    handler=handle,
    usage="[account]",
    expensive=True,
)


def register(app: App, services: Services) -> None:
    """`/atp gmsa` has no interactions."""
