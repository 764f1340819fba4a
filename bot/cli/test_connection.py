"""`atp-bot test-connection`: the ATP console's "Test Connection", from the command line."""

from __future__ import annotations

import argparse
import json
import logging
from contextlib import closing
from typing import TYPE_CHECKING, Any

from bot.cli import context
from bot.config.core import ConfigError, UsageError
from bot.infra.exitcodes import ExitCode

if TYPE_CHECKING:
    from bot.directory import ConnectionTestResult, Outcome

log = logging.getLogger(__name__)


def outcome_exit_code(outcome: Outcome) -> ExitCode:
    from bot.directory import Outcome

    exit_codes = {
        Outcome.PASSED: ExitCode.OK,
        Outcome.REJECTED: ExitCode.PROBLEM,
        Outcome.REFUSED: ExitCode.PROBLEM,
        Outcome.UNREACHABLE: ExitCode.UNREACHABLE,
    }
    return exit_codes[outcome]


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "test-connection",
        help="test a password for a directory service account against its domain controllers",
        description="Bind to the account's domain controllers over LDAPS/StartTLS with a candidate "
        "password, as the ATP console's Test Connection does. Nothing is saved.",
    )
    parser.add_argument("--account", required=True, metavar="ID", help="account id from the configuration")
    context.add_password_source(parser)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(handler=run)


def render(result: ConnectionTestResult) -> list[str]:
    """The result as an operator reads it, each thing once (never holds the password)."""
    from bot.directory import Outcome
    from bot.directory.connection import AttemptOutcome

    headline = {
        Outcome.PASSED: "PASSED",
        Outcome.REJECTED: "REJECTED",
        Outcome.REFUSED: "NOT TESTED",
        Outcome.UNREACHABLE: "UNREACHABLE",
    }[result.outcome]
    lines = [f"{headline}: account {result.account_id}: {result.summary or result.message}"]
    if result.passed:
        lines.append(f"  bind identity: {result.bind_identity}")
    elif result.reason:
        code = f", AD code {result.ad_code}" if result.ad_code else ""
        where = f", {result.dc}" if result.dc and result.dc not in lines[0] else ""
        lines.append(f"  reason: {result.reason}{code}{where}")
    skipped = [a for a in result.attempts if a.outcome not in (AttemptOutcome.OK, AttemptOutcome.REJECTED)]
    lines.extend(f"  {a.url}: {a.outcome}: {a.detail}" for a in skipped)
    lines.extend(f"  warning: {warning}" for warning in result.warnings)
    lines.extend(f"  note: {note}" for note in result.notes)
    return lines


def as_json(result: ConnectionTestResult) -> dict[str, object]:
    expiry = result.expiry
    return {
        "account": result.account_id,
        "outcome": result.outcome.value,
        "passed": result.passed,
        "reason": result.reason.value if result.reason else None,
        "ad_code": result.ad_code,
        "message": result.message,
        "dc": result.dc,
        "bind_identity": result.bind_identity,
        "password_never_expires": expiry.never if expiry else None,
        "password_expires": expiry.at.isoformat() if expiry and expiry.at else None,
        "attempts": [{"dc": a.url, "outcome": a.outcome.value, "detail": a.detail} for a in result.attempts],
        "notes": list(result.notes),
        "warnings": list(result.warnings),
    }


def run(args: argparse.Namespace) -> int:
    from bot.audit import AuditAction, AuditError, cli_actor, open_audit
    from bot.change import record_busy, record_interrupted_test, record_test
    from bot.change.failures import report_failure
    from bot.config import password_refusal
    from bot.directory import AccountBusy, AccountLocks, LockoutGuard, run_connection_test
    from bot.infra.redaction import active_secret

    settings = context.load(args)
    account = settings.account(args.account)
    refusal = password_refusal(account)
    if refusal:
        raise UsageError([refusal])
    audit = open_audit(settings)  # every test is audited: a trail that cannot be opened stops it here
    actor = cli_actor()
    password = context.read_audited_password(
        args, audit, AuditAction.TEST, account.id, f"New password for {account.username}: "
    )
    guard = LockoutGuard.for_settings(settings)
    with active_secret(password):
        try:
            with closing(AccountLocks.for_settings(settings)) as locks, locks.hold(account.id) as lease:
                try:
                    result = run_connection_test(account, password, guard=guard, lease=lease)
                except KeyboardInterrupt:  # Ctrl-C: AD may have the password, the guard counts the test
                    record_interrupted_test(audit, actor, account.id)
                    raise
        except AccountBusy as busy:
            record_busy(audit, actor, account.id, busy)
            print(f"NOT TESTED: {busy}")
            return ExitCode.PROBLEM
        except Exception as exc:  # noqa: BLE001 - told in one line, logged and audited
            doing = f"account {account.id}: the connection test"
            line = report_failure(audit, actor, AuditAction.TEST, account.id, exc, doing=doing)
            if isinstance(exc, ConfigError):  # found before anything was sent
                print(f"NOT TESTED: something went wrong: {line}")
                return ExitCode.USAGE
            print(f"UNKNOWN: something went wrong: {line}")
            return ExitCode.PROBLEM
    try:
        record_test(audit, actor, result)
    except AuditError as exc:
        log.error("the connection test could not be audited: %s", exc)
    if args.json:
        print(json.dumps(as_json(result), indent=2))
    else:
        print("\n".join(render(result)))
    return outcome_exit_code(result.outcome)
