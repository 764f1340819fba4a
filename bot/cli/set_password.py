"""`atp-bot set-password`: the safe change from the command line — test, save, audit, check the sensors."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from pydantic import SecretStr
from slack_sdk.errors import SlackApiError

from bot.audit import AuditAction, AuditOutcome, AuditSink, cli_actor, record_or_log
from bot.change import ChangeOutcome, ChangeProgress, ChangeStatus, open_changes, sensors_for_account
from bot.cli import check, context
from bot.cli.test_connection import EXIT_CODES, render
from bot.config import SLACK_BOT_TOKEN_ENV, AccountConfig, ConfigError, Settings, UsageError, read_secret
from bot.directory import ConnectionTestResult
from bot.exitcodes import ExitCode
from bot.failures import CONFIG_ERROR, one_line
from bot.lockout import replica_account_locks
from bot.recovery import Recovery
from bot.sensors import SensorResult
from bot.slack.client import build_client
from bot.slack.text import inline
from commands.password.views import announcement


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
    parser.add_argument(
        "--break-glass",
        action="store_true",
        help="save without the second person's approval that [approvals] requires (needs --reason); "
        "audited and announced as a break-glass change",
    )
    parser.add_argument("--reason", metavar="TEXT", help="why approval is bypassed (with --break-glass)")
    parser.set_defaults(handler=run)


REASON_LIMIT = 500


def break_glass_note(args: argparse.Namespace, settings: Settings, account_id: str) -> str | None:
    """What a break-glass change records and announces (None: an ordinary change). Raises UsageError when
    the account needs approval and the flags do not bypass it, or the flags are incomplete."""
    reason = (args.reason or "").strip()
    if args.reason is not None and not args.break_glass:
        raise UsageError(["--reason goes with --break-glass"])
    if args.break_glass and not reason:
        raise UsageError(['--break-glass needs --reason "why the approval is bypassed"'])
    if len(reason) > REASON_LIMIT:
        raise UsageError([f"--reason: at most {REASON_LIMIT} characters"])
    if args.break_glass:
        return f"Break-glass change (no approval): {reason}"
    if settings.approval_required(account_id):
        raise UsageError(
            [
                f"account {account_id} needs a second person's approval: change it from Slack "
                f'(`/atp password {account_id}`), or in an emergency use --break-glass --reason "…"'
            ]
        )
    return None


def refuse_unapproved(audit: AuditSink, account_id: str, refused: UsageError) -> None:
    record_or_log(
        audit,
        cli_actor(),
        AuditAction.BREAK_GLASS,
        account_id,
        AuditOutcome.REFUSED,
        "approval",
        str(refused),
    )


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
    if outcome.status is ChangeStatus.SAVE_FAILED and outcome.error_reason == "unreachable":
        return ExitCode.UNREACHABLE
    return ExitCode.PROBLEM


class Announcer:
    """Tells `[slack] channel` about a change made here, with the text the Slack face posts. Best effort:
    a failure is a warning and an audit row, never a failed change. The bot token is read at once (the
    Slack secrets already left the environment with the others: bot.secret_env)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.token: SecretStr | None = None
        self.problem: str | None = None
        if settings.slack.channel is not None:
            try:
                self.token = read_secret("slack bot token", env=SLACK_BOT_TOKEN_ENV, file=None)
            except ConfigError as exc:
                self.problem = one_line(exc)

    def announce(self, outcome: ChangeOutcome, actor: str, audit: AuditSink, note: str | None = None) -> None:
        channel = self.settings.slack.channel
        if channel is None:
            return
        problem = self.problem or self._post(channel, outcome, actor, note)
        if problem is None:
            record_or_log(
                audit,
                actor,
                AuditAction.ANNOUNCE,
                outcome.account_id,
                AuditOutcome.OK,
                None,
                f"channel {channel}",
            )
            print(f"Announced in Slack channel {channel}.")
            return
        record_or_log(
            audit, actor, AuditAction.ANNOUNCE, outcome.account_id, AuditOutcome.ERROR, "slack", problem
        )
        print(f"WARNING: the change was not announced in Slack channel {channel}: {problem}", file=sys.stderr)

    def _post(self, channel: str, outcome: ChangeOutcome, actor: str, note: str | None) -> str | None:
        """Post the announcement; why it failed, or None."""
        assert self.token is not None
        text, blocks = announcement(outcome, f"`{actor}`", self.settings, note)
        try:
            client = build_client(self.settings.slack.api_url, self.token)
            client.chat_postMessage(channel=channel, text=text, blocks=blocks)
        except SlackApiError as exc:
            return f"Slack answered {exc.response.get('error')}"
        except Exception as exc:  # noqa: BLE001 - a warning and an audit row say what happened
            return one_line(exc)
        return None


def run(args: argparse.Namespace) -> int:
    settings = context.load(args)
    account = settings.account(args.account)
    changes = open_changes(settings)
    actor = cli_actor()
    try:
        note = break_glass_note(args, settings, account.id)
    except UsageError as refused:
        refuse_unapproved(changes.audit, account.id, refused)
        raise
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
    if note is not None:
        record_or_log(changes.audit, actor, AuditAction.BREAK_GLASS, account.id, AuditOutcome.OK, None, note)
    with replica_account_locks(settings):
        outcome = changes.change(account.id, password, actor, printer, note=note)
    code = exit_code(outcome)
    if not outcome.saved_ok:
        return code
    announcer.announce(outcome, actor, changes.audit, inline(note) if note else None)
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
