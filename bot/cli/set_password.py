"""`atp-bot set-password`: the safe change from the command line — test, save, audit, check the sensors."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from bot.audit import AuditAction, cli_actor
from bot.change import (
    ChangeOutcome,
    ChangeProgress,
    ChangeStatus,
    Recovery,
    open_changes,
    sensors_for_account,
)
from bot.change.failures import CONFIG_ERROR
from bot.cli import check, context
from bot.cli.test_connection import EXIT_CODES, render
from bot.config import (
    AccountConfig,
    UsageError,
    password_refusal,
)
from bot.directory import ConnectionTestResult, replica_account_locks
from bot.infra.exitcodes import ExitCode
from bot.sensors import SensorResult
from bot.store import store_exit_code
from commands.password.announce import Announcer


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


class _Printer(ChangeProgress):
    def __init__(self, names: Sequence[str]) -> None:
        self.names = names
        self.live: check.LiveProgress | None = None
        self.checks_problem: str | None = None

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
            if outcome.problem:
                print(f"WARNING: {outcome.message}")
        elif outcome.status is ChangeStatus.FAILED:
            print(outcome.message)
        elif outcome.status is not ChangeStatus.TEST_FAILED:
            print(f"NOT SAVED: {outcome.message}")
        else:
            print("NOT SAVED: the password did not pass the connection test.")

    def checking(self) -> None:
        print(
            f"Checking {len(self.names)} sensor(s): services, credential errors since the change…", flush=True
        )
        if sys.stderr.isatty():
            self.live = check.LiveProgress(self.names, sys.stderr)
            self.live.start()

    def sensor_checked(self, result: SensorResult) -> None:
        if self.live is not None:
            self.live.add(result)

    def not_using_dsa(self, names: Sequence[str]) -> None:
        listed = ", ".join(names)
        print(f"Not checked, unified sensors that do not use the directory service account: {listed}")

    def checks_done(self, results: Sequence[SensorResult]) -> None:
        self._stop_live()
        check.print_report(results)

    def checks_failed(self, problem: str) -> bool:
        self._stop_live()
        self.checks_problem = problem
        print(f"The sensors could not be checked: {problem}")
        return True

    def _stop_live(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None


def exit_code(outcome: ChangeOutcome) -> ExitCode:
    """0 once the password is saved; otherwise why not: the test's verdict, 2 for a configuration problem,
    3 for a store that could not be reached, else 1."""
    if outcome.saved_ok:
        return ExitCode.OK
    if outcome.test is not None and not outcome.test.passed:
        return EXIT_CODES[outcome.test.outcome]
    if outcome.error_reason == CONFIG_ERROR:
        return ExitCode.USAGE
    if outcome.status is ChangeStatus.SAVE_FAILED and outcome.error_reason is not None:
        return store_exit_code(outcome.error_reason)
    return ExitCode.PROBLEM


def run(args: argparse.Namespace) -> int:
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
    printer = _Printer([s.name for s in sensors_for_account(settings, account.id)])
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
