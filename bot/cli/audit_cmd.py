"""`atp-bot audit verify` and `atp-bot history`: check the audit chain, and list recent events."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from bot.audit import AuditError, open_audit
from bot.audit_view import format_history, history_json
from bot.cli import context
from bot.exitcodes import ExitCode


def _positive(text: str) -> int:
    """`--limit`: argparse turns the error into a usage error (exit 2) naming the option."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 10_000:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to 10000, not {text!r}")
    return value


def register(commands: Any) -> None:
    audit = commands.add_parser("audit", help="the audit trail")
    actions = audit.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    verify = actions.add_parser(
        "verify", help="check the hash chain; exit 0 if intact, 1 naming the first broken row"
    )
    verify.set_defaults(handler=run_verify)

    history = commands.add_parser("history", help="show recent audit events (newest first)")
    history.add_argument("--account", metavar="ID", help="only events about this account")
    history.add_argument("--limit", type=_positive, default=50, metavar="N", help="at most N events (50)")
    history.add_argument("--json", action="store_true", help="print a JSON list of events")
    history.set_defaults(handler=run_history)


def run_verify(args: argparse.Namespace) -> int:
    settings = context.load(args)
    try:
        result = open_audit(settings).verify()
    except AuditError as exc:
        print(f"atp-bot: {exc}", file=sys.stderr)
        return ExitCode.PROBLEM
    if result.intact:
        print(f"audit trail intact: {result.rows} rows, head {result.head_hash}")
        return ExitCode.OK
    print(
        f"audit trail BROKEN at row {result.first_broken_id}: {result.problem} "
        f"({result.rows} rows before it verified)"
    )
    return ExitCode.PROBLEM


def run_history(args: argparse.Namespace) -> int:
    settings = context.load(args)
    if args.account is not None:
        settings.account(args.account)  # an unknown id is a usage error, not an empty history
    try:
        rows = open_audit(settings).recent(account=args.account, limit=args.limit)
    except AuditError as exc:
        print(f"atp-bot: {exc}", file=sys.stderr)
        return ExitCode.PROBLEM
    if args.json:
        print(json.dumps(history_json(rows), ensure_ascii=False, indent=2))
    else:
        print(format_history(rows, args.account))
    return ExitCode.OK
