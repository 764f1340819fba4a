"""`atp-bot audit verify|init|rekey` and `atp-bot history`: check and key the audit chain, list events."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from bot.cli import context
from bot.infra.exitcodes import ExitCode

if TYPE_CHECKING:
    from bot.audit.key import AuditKeyInit
    from bot.audit.trail import AuditAnchor, AuditVerification


def _positive(text: str) -> int:
    """`--limit`: argparse turns the error into a usage error (exit 2) naming the option."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 10_000:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to 10000, not {text!r}")
    return value


def _anchor(text: str) -> AuditAnchor:
    from bot.audit.trail import AuditAnchor

    try:
        return AuditAnchor.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(commands: Any) -> None:
    audit = commands.add_parser("audit", help="the audit trail")
    actions = audit.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    verify = actions.add_parser(
        "verify",
        help="check the chain and its head with the audit key; exit 0 intact, 1 tampered (naming the row "
        "or the head), 2 a keyed trail but no key",
    )
    verify.add_argument(
        "--anchor",
        type=_anchor,
        metavar="ID:HASH",
        help="a row and its hash noted elsewhere (a previous verify, the daily announcement): "
        "the trail must still hold them",
    )
    verify.add_argument("--json", action="store_true", help="print the result as a JSON object")
    verify.set_defaults(handler=run_verify)
    init = actions.add_parser(
        "init", help="create the audit HMAC key file (mode 0600) unless the key exists; never overwrites"
    )
    init.set_defaults(handler=run_init)
    rekey = actions.add_parser(
        "rekey", help="verify an unkeyed (older) trail and seal it with a keyed row; later rows are keyed"
    )
    rekey.set_defaults(handler=run_rekey)

    history = commands.add_parser("history", help="show recent audit events (newest first)")
    history.add_argument("--account", metavar="ID", help="only events about this account")
    history.add_argument("--limit", type=_positive, default=50, metavar="N", help="at most N events (50)")
    history.add_argument("--json", action="store_true", help="print a JSON list of events")
    history.set_defaults(handler=run_history)


def _print_broken(result: AuditVerification) -> None:
    print(
        f"audit trail BROKEN at row {result.first_broken_id}: {result.problem} "
        f"({result.rows} rows before it verified)"
    )


def _print_warning(result: AuditVerification) -> None:
    if result.warning:
        print(f"atp-bot: warning: {result.warning}", file=sys.stderr)


def run_verify(args: argparse.Namespace) -> int:
    from bot.audit import AuditError, open_audit
    from bot.audit.view import verification_json

    settings = context.load(args)
    trail = open_audit(settings)
    try:
        result = trail.verify(args.anchor)
    except AuditError as exc:
        print(f"atp-bot: {exc}", file=sys.stderr)
        return ExitCode.PROBLEM
    code = ExitCode.OK if result.intact else ExitCode.USAGE if result.key_missing else ExitCode.PROBLEM
    if args.json:
        print(json.dumps(verification_json(result), indent=2))
    elif result.key_missing:
        print(f"atp-bot: configuration error: {result.problem}", file=sys.stderr)
    elif result.intact:
        keyed = f"keyed from row {result.keyed_from}" if result.keyed_from else "unkeyed"
        print(f"audit trail intact: {result.rows} rows ({keyed}), head {result.anchor or 'none'}")
    else:
        _print_broken(result)
    _print_warning(result)
    anchored = trail.anchor.status().problem if trail.anchor else None
    if anchored:
        print(f"atp-bot: warning: {anchored}", file=sys.stderr)
    return code


def key_created_lines(init: AuditKeyInit) -> list[str]:
    """What `audit init` and `store init` say about the audit key."""
    if not init.created:
        return [f"the audit key comes from the {init.source}"]
    return [
        f"created the audit key in {init.source.removeprefix('key file ')} (mode 0600)",
        "back it up apart from the audit database: without it the keyed trail cannot be verified",
    ]


def print_key_warning(init: AuditKeyInit) -> None:
    """What `audit init` and `store init` warn about the audit key (stderr)."""
    if init.warning:
        print(f"atp-bot: warning: {init.warning}", file=sys.stderr)


def run_init(args: argparse.Namespace) -> int:
    from bot.audit.trail import AuditAction, AuditEvent, AuditOutcome, cli_actor, init_audit_key, open_audit

    settings = context.load(args)
    init = init_audit_key(settings)
    print("\n".join(key_created_lines(init)))
    print_key_warning(init)
    trail = open_audit(settings)
    if init.created:
        trail.record(
            AuditEvent(
                actor=cli_actor(),
                action=AuditAction.AUDIT_INIT,
                account=None,
                outcome=AuditOutcome.OK,
                detail=init.source,
            )
        )
    if trail.keyed_from() is None and trail.recent(limit=1):
        print("the trail was written without the key: seal it with `atp-bot audit rekey`")
    return ExitCode.OK


def run_rekey(args: argparse.Namespace) -> int:
    from bot.audit import cli_actor, open_audit

    settings = context.load(args)
    trail = open_audit(settings)
    if trail.key is None:
        print(
            "atp-bot: configuration error: no audit key: create one with `atp-bot audit init`",
            file=sys.stderr,
        )
        return ExitCode.USAGE
    rekeyed = trail.rekey(cli_actor())
    before = rekeyed.verification
    if rekeyed.row is not None:
        row = rekeyed.row
        print(f"verified {before.rows} unkeyed rows and sealed them with keyed row {row.id}")
        print(f"every later row is keyed; head {row.id}:{row.hash}")
        return ExitCode.OK
    if not before.intact:
        _print_broken(before)
        print("nothing was re-keyed: restore the trail from a backup, or keep it aside and start a new one")
        return ExitCode.PROBLEM
    if before.keyed_from is not None:
        print(f"the trail is already keyed from row {before.keyed_from}: nothing to do")
    else:
        print("the trail is empty: its first row will be keyed")
    return ExitCode.OK


def run_history(args: argparse.Namespace) -> int:
    from bot.audit import AuditError, open_audit
    from bot.audit.view import format_history, history_json

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
