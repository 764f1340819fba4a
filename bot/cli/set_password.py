"""`atp-bot set-password`: the safe change from the command line — test, save, audit, check the sensors."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from bot.audit import cli_actor
from bot.change import ChangeOutcome, ChangeProgress, ChangeStatus, open_changes
from bot.cli import check, context
from bot.cli.test_connection import EXIT_CODES, render
from bot.config import AccountConfig
from bot.directory import ConnectionTestResult
from bot.exitcodes import ExitCode
from bot.lockout import replica_account_locks
from bot.recovery import Recovery
from bot.sensors import SensorResult


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "set-password",
        help="test a new password for an account and save it only if the test passes",
        description="The console's change-password procedure, safely: connection test against the "
        "account's domain controllers, save through the configured store only if it passed, audit, "
        "then check every sensor that uses the account.",
    )
    parser.add_argument("--account", required=True, metavar="ID", help="account id from the configuration")
    context.add_password_source(parser)
    parser.add_argument("--no-checks", action="store_true", help="skip the follow-up sensor checks")
    parser.set_defaults(handler=run)


class _Printer(ChangeProgress):
    def recovered(self, recovery: Recovery) -> None:
        print(f"AN EARLIER CHANGE WAS INTERRUPTED: {recovery.describe()}.", flush=True)

    def testing(self, account: AccountConfig) -> None:
        print(
            f"Testing the password of {account.id} ({account.username}) on its domain controllers…",
            flush=True,
        )

    def tested(self, result: ConnectionTestResult) -> None:
        print("\n".join(render(result)), flush=True)

    def finished(self, outcome: ChangeOutcome) -> None:
        if outcome.saved:
            saved = outcome.saved
            print(
                f"SAVED: account {saved.account_id} in the {saved.backend} store "
                f"at {saved.saved_at:%Y-%m-%d %H:%M:%S} UTC by {saved.saved_by}"
            )
        elif outcome.status is not ChangeStatus.TEST_FAILED:
            print(f"NOT SAVED: {outcome.message}")
        else:
            print("NOT SAVED: the password did not pass the connection test.")

    def sensor_checked(self, result: SensorResult) -> None:
        state = "unreachable" if not result.reachable else "ok" if result.healthy else "problem"
        print(f"  {result.name}: {state}", flush=True)

    def not_using_dsa(self, names: Sequence[str]) -> None:
        listed = ", ".join(names)
        print(f"Not checked, unified sensors that do not use the directory service account: {listed}")

    def checks_done(self, results: Sequence[SensorResult]) -> None:
        if results:
            print(check.render_table(results))
            for result in results:
                for problem in result.problems:
                    print(f"{result.name}: {problem}")


def exit_code(outcome: ChangeOutcome) -> ExitCode:
    if outcome.test is not None and not outcome.test.passed:
        return EXIT_CODES[outcome.test.outcome]
    if outcome.status is ChangeStatus.SAVE_FAILED and outcome.error_reason == "unreachable":
        return ExitCode.UNREACHABLE
    return ExitCode.OK if outcome.saved_ok else ExitCode.PROBLEM


def run(args: argparse.Namespace) -> int:
    settings = context.load(args)
    account = settings.account(args.account)
    password = context.read_password(args, f"New password for {account.username}: ", confirm=True)
    changes = open_changes(settings)
    actor = cli_actor()
    printer = _Printer()
    with replica_account_locks(settings):
        outcome = changes.change(account.id, password, actor, printer)
    code = exit_code(outcome)
    if outcome.saved_ok and not args.no_checks:
        sensors = changes.follow_up_checks(account.id, outcome.changed_at, actor, printer)
        if sensors:
            code = check.exit_code(sensors)
        else:
            print("No sensors are configured for this account: nothing to check.")
    return code
