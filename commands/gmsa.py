"""`/atp gmsa [account]`: the gMSA checks of `atp-bot gmsa check`, shown to the person who asked."""

from __future__ import annotations

from slack_bolt import App, Respond

from bot.config import AccountConfig, ConfigError, Settings
from bot.gmsa import check_gmsa, describe, sensor_scope
from bot.slack.context import CommandContext, Services, Subcommand
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
    ctx.services.submit(run_check, ctx.services, chosen, ctx.respond)


def run_check(services: Services, account: AccountConfig, respond: Respond) -> None:
    """On the bot's executor: read Graph (cached) and AD, then replace the ephemeral reply with the
    verdicts."""
    settings = services.settings
    try:
        report = check_gmsa(settings, account, sensor_scope(settings, account, services.fleet))
        text = "```" + "\n".join(describe(report)) + "```"
    except ConfigError as error:  # e.g. the lookup password's variable is not set
        text = f"The gMSA check of `{account.id}` cannot run: {'; '.join(error.problems)}"
    respond(text=text, response_type="ephemeral", replace_original=True)


SUBCOMMAND = Subcommand(
    name=NAME,
    summary="check a gMSA account: who may retrieve its password, KDS root key, encryption types",
    handler=handle,
    usage="[account]",
)


def register(app: App, services: Services) -> None:
    """`/atp gmsa` has no interactions."""
