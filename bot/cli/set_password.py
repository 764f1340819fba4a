"""`atp-bot set-password`: the safe change from the command line — test, save, audit, check the sensors."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from bot.cli import check, context
from bot.cli.test_connection import outcome_exit_code
from bot.config.core import UsageError
from bot.infra.exitcodes import ExitCode

if TYPE_CHECKING:
    from bot.audit import AuditSink
    from bot.change import ChangeOutcome, PasswordChanges
    from bot.change.portal import PortalStep
    from bot.config import AccountConfig, Settings

Prompt = Callable[[str], str]  # `input`: waits for Enter at the terminal


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "set-password",
        help="test a new password for an account and save it only if the test passes",
        description="The console's change-password procedure, safely: connection test against the "
        "account's domain controllers, save through the configured store only if it passed, audit, "
        "announce it in the Slack channel (when [slack] channel is set), then check every sensor that "
        "uses the account. Unless the store is the ATA Center's, Defender for Identity gets the password "
        "only when it is saved in the Defender portal too: at a terminal, set-password says how and waits "
        "for Enter (see --portal-done, --no-wait); the checks start once that is done. Exits 0 once the "
        "password is saved, whatever the checks find (see --strict-checks).",
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
    portal = parser.add_mutually_exclusive_group()
    portal.add_argument(
        "--portal-done",
        action="store_true",
        help="the new password is already saved in the Defender portal: confirm the portal step at once",
    )
    portal.add_argument(
        "--no-wait",
        action="store_true",
        help="do not wait for the portal step: leave it pending (atp-bot portal-done confirms it later)",
    )
    parser.set_defaults(handler=run)


def portal_step(
    args: argparse.Namespace,
    changes: PasswordChanges,
    account: AccountConfig,
    actor: str,
    wait: Prompt = input,
) -> PortalStep | None:
    """After a save that Defender for Identity does not have yet: say what to do in the portal, then
    confirm the step (`--portal-done`, or Enter at a terminal) or leave it pending (`--no-wait`, no
    terminal, Ctrl-C/Ctrl-D). The confirmed step, or None when it stays pending."""
    from bot.change.portal import portal_instructions
    from bot.cli.portal_done_cmd import confirm_from_shell

    print(f"NOT YET IN DEFENDER FOR IDENTITY: {portal_instructions(account.username)}", flush=True)
    later = (
        f"The portal step is pending: once it is done, run `atp-bot portal-done --account {account.id}` "
        "(or click Done in the portal in Slack); the follow-up checks start then."
    )
    if not args.portal_done:
        if args.no_wait or args.password_stdin or not sys.stdin.isatty():
            print(later)
            return None
        try:
            wait("Press Enter once it is saved in the portal (Ctrl-C: later)… ")
        except (EOFError, KeyboardInterrupt):
            print(f"\n{later}")
            return None
    return confirm_from_shell(changes, account.id, actor)


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
    from bot.audit import AuditAction, AuditEvent, AuditOutcome, cli_actor, record_or_log

    refusal = AuditEvent(
        actor=cli_actor(),
        action=AuditAction.BREAK_GLASS,
        account=account_id,
        outcome=AuditOutcome.REFUSED,
        reason="approval",
        detail=str(refused),
    )
    record_or_log(audit, refusal)


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
    from bot.audit import AuditAction, AuditEvent, AuditOutcome, cli_actor, record_or_log
    from bot.change import open_changes
    from bot.change.portal import remember_thread
    from bot.cli.change_printer import ChangePrinter
    from bot.config import password_refusal
    from commands.password.announce import Announcer

    settings = context.load(args, contacts_sensors=not args.no_checks)
    account = settings.account(args.account)
    refusal = password_refusal(account)
    if refusal:
        raise UsageError([refusal])
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
    printer = ChangePrinter(changes.sensor_scope(account.id).names)  # Graph's sensors too
    if note is not None:
        break_glass = AuditEvent(
            actor=actor,
            action=AuditAction.BREAK_GLASS,
            account=account.id,
            outcome=AuditOutcome.OK,
            detail=note,
        )
        record_or_log(changes.audit, break_glass)
    checks_next = not args.no_checks and bool(printer.names)
    outcome = changes.change(account.id, password, actor, printer, note=note, checks_next=checks_next)
    code = exit_code(outcome)
    if not outcome.saved_ok:
        return code
    thread = announcer.announce(outcome, actor, changes.audit, note)
    since = outcome.changed_at
    if outcome.portal_pending and outcome.saved is not None:
        if thread is not None:
            remember_thread(changes.portal, outcome.saved, thread)
        step = portal_step(args, changes, account, actor)
        if step is None:
            return code
        announcer.portal_done(outcome, actor, step, note)
        since = step.confirmed_at
    if args.no_checks:
        return code
    if not printer.names:
        print("No sensors are configured for this account: nothing to check.")
        return code
    printer.checking()
    results = changes.follow_up_checks(account.id, since, actor, printer)
    if not args.strict_checks:
        return code
    return ExitCode.PROBLEM if printer.checks_problem else check.exit_code(results)
