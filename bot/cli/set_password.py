"""`atp-bot set-password`: the safe change from the command line — test, save, audit, check the sensors."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from bot.cli import check, context
from bot.cli.test_connection import outcome_exit_code
from bot.config.core import UsageError
from bot.infra.exitcodes import ExitCode

if TYPE_CHECKING:
    from bot.change import ChangeOutcome


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "set-password",
        help="test a new password for an account and save it only if the test passes",
        description="The console's change-password procedure, safely: connection test against the "
        "account's domain controllers, save through the configured store only if it passed, audit, "
        "announce it in the Slack channel (when [slack] channel is set), then check every sensor that "
        "uses the account. Exits 0 once the password is saved, whatever the checks find (see "
        "--strict-checks).",
    )
    parser.add_argument("--account", required=True, metavar="ID", help="account id from the configuration")
    context.add_password_source(parser)
    parser.add_argument("--no-checks", action="store_true", help="skip the follow-up sensor checks")
    parser.add_argument(
        "--strict-checks",
        action="store_true",
        help="let the follow-up checks decide the exit code, as `atp-bot check` does",
    )
    parser.set_defaults(handler=run)


def exit_code(outcome: ChangeOutcome) -> ExitCode:
    """0 once the password is saved; otherwise why not: the test's verdict, 2 for a configuration problem,
    3 for a store that could not be reached, else 1."""
    from bot.change import ChangeStatus
    from bot.change.failures import CONFIG_ERROR
    from bot.store import store_exit_code

    if outcome.saved_ok:
        return ExitCode.OK
    if outcome.test is not None and not outcome.test.passed:
        return outcome_exit_code(outcome.test.outcome)
    if outcome.error_reason == CONFIG_ERROR:
        return ExitCode.USAGE
    if outcome.status is ChangeStatus.SAVE_FAILED and outcome.error_reason is not None:
        return store_exit_code(outcome.error_reason)
    return ExitCode.PROBLEM


def run(args: argparse.Namespace) -> int:
    from bot.audit import AuditAction, cli_actor
    from bot.change import open_changes, sensors_for_account
    from bot.cli.change_printer import ChangePrinter
    from bot.config import password_refusal
    from bot.directory import replica_account_locks
    from commands.password.announce import Announcer

    settings = context.load(args)
    account = settings.account(args.account)
    refusal = password_refusal(account)
    if refusal:
        raise UsageError([refusal])
    changes = open_changes(settings)
    actor = cli_actor()
    password = context.read_audited_password(
        args,
        changes.audit,
        AuditAction.CHANGE,
        account.id,
        f"New password for {account.username}: ",
        confirm=True,
    )
    announcer = Announcer(settings)
    printer = ChangePrinter([s.name for s in sensors_for_account(settings, account.id)])
    with replica_account_locks(settings):
        outcome = changes.change(account.id, password, actor, printer)
    code = exit_code(outcome)
    if not outcome.saved_ok:
        return code
    announcer.announce(outcome, actor, changes.audit)
    if args.no_checks:
        return code
    if not printer.names:
        print("No sensors are configured for this account: nothing to check.")
        return code
    printer.checking()
    results = changes.follow_up_checks(account.id, outcome.changed_at, actor, printer)
    if not args.strict_checks:
        return code
    return ExitCode.PROBLEM if printer.checks_problem else check.exit_code(results)
