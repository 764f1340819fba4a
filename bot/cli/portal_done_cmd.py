"""`atp-bot portal-done --account ID`: the portal step of a saved password is done (the operator saved it
in the Microsoft Defender portal). Confirms the account's pending step once, audited as `portal-updated`
like the Slack button, then runs the follow-up checks. Exit 0 when it confirmed, 1 when none was pending.
`atp-bot set-password` uses the same confirmation after its Enter or `--portal-done`."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from bot.cli import context
from bot.infra.exitcodes import ExitCode

if TYPE_CHECKING:
    from bot.change import PasswordChanges
    from bot.change.portal import PortalStep
    from bot.sensors import SensorResult


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "portal-done",
        help="confirm that a saved password was saved in the Defender portal too",
        description="Defender for Identity (cloud) gets a new password only when it is saved in the "
        "Microsoft Defender portal (Settings > Identities > Directory service accounts). Once you did, "
        "this confirms the account's pending portal step (audited as portal-updated) and checks every "
        "sensor that uses the account. Exits 0 when a pending step was confirmed, 1 when none was pending.",
    )
    parser.add_argument("--account", required=True, metavar="ID", help="account id from the configuration")
    parser.add_argument("--no-checks", action="store_true", help="skip the follow-up sensor checks")
    parser.set_defaults(handler=run)


def confirm_from_shell(changes: PasswordChanges, account_id: str, actor: str) -> PortalStep | None:
    """Confirm the account's pending portal step (once, audited), telling the terminal what became of it."""
    from datetime import UTC, datetime

    from bot.change.portal import confirm_step

    if changes.portal is None:
        print(f"No portal step: the {changes.store.backend} store is the one the sensors read.")
        return None
    step = confirm_step(changes.portal, changes.audit, account_id, actor, datetime.now(UTC))
    if step is None or step.confirmed_at is None:
        print(f"Nothing is waiting for the portal step of {account_id}.")
        return None
    saved = f"saved {step.saved_at:%H:%M} UTC by {step.saved_by}"
    print(f"Portal step confirmed at {step.confirmed_at:%H:%M} UTC by {actor} ({saved}).")
    return step


def check_after_portal(
    changes: PasswordChanges, step: PortalStep, actor: str, names: Sequence[str]
) -> tuple[list[SensorResult], str | None]:
    """The follow-up checks, from the confirmation on: (results, why they could not run)."""
    from bot.cli.change_printer import ChangePrinter

    printer = ChangePrinter(names)
    if not names:
        print("No sensors are configured for this account: nothing to check.")
        return [], None
    printer.checking()
    results = changes.follow_up_checks(step.account_id, step.confirmed_at, actor, printer)
    return results, printer.checks_problem


def run(args: argparse.Namespace) -> int:
    from bot.audit import cli_actor
    from bot.change import open_changes

    settings = context.load(args)
    account = settings.account(args.account)
    changes = open_changes(settings)
    actor = cli_actor()
    step = confirm_from_shell(changes, account.id, actor)
    if step is None:
        return ExitCode.PROBLEM
    if not args.no_checks:
        check_after_portal(changes, step, actor, changes.sensor_scope(account.id).names)
    return ExitCode.OK
