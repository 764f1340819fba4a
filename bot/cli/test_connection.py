"""`atp-bot test-connection`: the ATP console's "Test Connection", from the command line."""

from __future__ import annotations

import argparse
import json
from typing import Any

from bot.cli import context
from bot.directory import ConnectionTestResult, Outcome, run_connection_test
from bot.exitcodes import ExitCode
from bot.lockout import AccountBusy, LockoutGuard, hold_account, replica_account_locks
from bot.state import state_dir

EXIT_CODES = {
    Outcome.PASSED: ExitCode.OK,
    Outcome.REJECTED: ExitCode.PROBLEM,
    Outcome.REFUSED: ExitCode.PROBLEM,
    Outcome.UNREACHABLE: ExitCode.UNREACHABLE,
}


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
    """The result as an operator reads it (never holds the password)."""
    headline = {
        Outcome.PASSED: "PASSED",
        Outcome.REJECTED: "REJECTED",
        Outcome.REFUSED: "NOT TESTED",
        Outcome.UNREACHABLE: "UNREACHABLE",
    }[result.outcome]
    lines = [f"{headline}: account {result.account_id}: {result.message}"]
    if result.passed:
        lines.append(f"  verified by:   {result.dc}")
        lines.append(f"  bind identity: {result.bind_identity}")
        if result.expiry:
            lines.append(f"  password:      {result.expiry.describe()}")
    elif result.reason:
        code = f", AD code {result.ad_code}" if result.ad_code else ""
        where = f", {result.dc}" if result.dc else ""
        lines.append(f"  reason: {result.reason}{code}{where}")
    if not result.passed and len(result.attempts) > 1:
        lines.extend(f"  {a.url}: {a.outcome}: {a.detail}" for a in result.attempts)
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
    settings = context.load(args)
    account = settings.account(args.account)
    password = context.read_password(args, f"New password for {account.username}: ")
    directory = state_dir(settings)
    guard = LockoutGuard.for_settings(settings)
    try:
        with replica_account_locks(settings), hold_account(directory, account.id) as lease:
            result = run_connection_test(account, password, guard=guard, lease=lease)
    except AccountBusy as busy:
        print(f"NOT TESTED: {busy}")
        return ExitCode.PROBLEM
    if args.json:
        print(json.dumps(as_json(result), indent=2))
    else:
        print("\n".join(render(result)))
    return EXIT_CODES[result.outcome]
