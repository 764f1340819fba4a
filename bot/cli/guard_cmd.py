"""`atp-bot guard status` and `atp-bot guard reset`: see, and after one's own typos clear, the lockout
guard's count of rejected tests, and the lookup accounts' suspensions (`reset --lookup` lifts one).

A reset is audited with the operator as actor and refused while AD's own pre-check (the account's lookup
account) says the account is locked or one bad password away from it: clearing the guard's count then
would let the next typo lock the account. Without a lookup account AD's view is unknown, so a reset needs
`--force`; `--force` never overrides what AD says.
"""

from __future__ import annotations

import argparse
import json
from contextlib import closing
from datetime import datetime
from typing import TYPE_CHECKING, Any

from bot.cli import context
from bot.infra.exitcodes import ExitCode

if TYPE_CHECKING:
    from bot.config import AccountConfig, Settings
    from bot.directory import LockoutPrecheck, LookupGuard, LookupSuspension
    from bot.directory.lockout import AccountLease, GuardCount, GuardUnavailable, LockoutGuard


def register(commands: Any) -> None:
    guard = commands.add_parser(
        "guard", help="the lockout guard's count of rejected tests: show it, or reset it for an account"
    )
    actions = guard.add_subparsers(dest="guard_command", metavar="ACTION", required=True)
    status = actions.add_parser(
        "status",
        help="per account: rejections counted in the window, the limit, when the window frees up; the "
        "suspended lookup accounts (exit 1 when an account is refusing tests or a lookup account is "
        "suspended)",
    )
    status.add_argument("--account", metavar="ID", help="only this account")
    status.add_argument("--json", action="store_true", help="print the counts as JSON")
    status.set_defaults(handler=run_status)
    reset = actions.add_parser(
        "reset",
        help="forget an account's counted rejections (audited; refused while AD says the account is "
        "locked or near lockout)",
    )
    reset.add_argument("--account", required=True, metavar="ID", help="account id from the configuration")
    reset.add_argument(
        "--force",
        action="store_true",
        help="reset even though AD's own lockout state cannot be read (no lookup account, or no DC "
        "answered); never overrides AD saying the account is locked or near lockout",
    )
    reset.add_argument(
        "--lookup",
        action="store_true",
        help="lift the suspension of the account's lookup account instead (audited): its binds resume "
        "with the password it has now",
    )
    reset.set_defaults(handler=run_reset)


def _unavailable(guard: LockoutGuard, problem: GuardUnavailable) -> int:
    print(f"atp-bot: the lockout guard's count is unavailable: {problem}")
    return ExitCode.UNREACHABLE if guard.shared else ExitCode.PROBLEM


def _time(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value else None


def count_json(count: GuardCount) -> dict[str, object]:
    return {
        "account": count.account_id,
        "rejections": count.rejections,
        "pending": count.pending,
        "limit": count.limit,
        "refusing": count.refusing,
        "refused_until": _time(count.refused_until),
        "oldest_expires_at": _time(count.oldest_expires_at),
    }


def describe(count: GuardCount) -> str:
    pending = f" ({count.pending} never settled: the test was cut short)" if count.pending else ""
    line = f"{count.account_id}: {count.rejections} of {count.limit} counted{pending}"
    if count.refused_until is not None:
        return f"{line}: REFUSING tests until {count.refused_until:%Y-%m-%d %H:%M} UTC"
    if count.oldest_expires_at is not None:
        return f"{line}; the oldest leaves the window at {count.oldest_expires_at:%Y-%m-%d %H:%M} UTC"
    return line


def suspension_json(suspension: LookupSuspension, users: tuple[str, ...]) -> dict[str, object]:
    return {
        "lookup_account": suspension.lookup_account,
        "accounts": list(users),
        "since": _time(suspension.since),
        "until": _time(suspension.until),
        "until_password_source_changes": True,
        "dc": suspension.dc,
        "message": suspension.message,
    }


def describe_suspension(suspension: LookupSuspension, users: tuple[str, ...]) -> str:
    return (
        f"lookup account of {', '.join(users)}: SUSPENDED since {suspension.since:%Y-%m-%d %H:%M} UTC: "
        f"{suspension.message}"
    )


def run_status(args: argparse.Namespace) -> int:
    from bot.directory import LookupBlocked, reading_with
    from bot.directory.lockout import GuardUnavailable, LockoutGuard

    settings = context.load(args)
    accounts = [settings.account(args.account)] if args.account else settings.accounts
    guard = LockoutGuard.for_settings(settings)
    try:
        counts = [guard.count(account.id) for account in accounts]
        active = [(s, reading_with(accounts, s.lookup_account)) for s in guard.lookups.active()]
        suspensions = [(suspension, users) for suspension, users in active if users]
    except GuardUnavailable as problem:
        return _unavailable(guard, problem)
    except LookupBlocked as problem:
        return _unavailable(guard, GuardUnavailable(guard.where, problem.message))
    config = guard.config
    if args.json:
        document = {
            "ledger": "shared_database" if guard.shared else "state_dir",
            "limit": config.max_rejections,
            "window_minutes": config.window_minutes,
            "accounts": [count_json(count) for count in counts],
            "lookup_suspensions": [suspension_json(*pair) for pair in suspensions],
        }
        print(json.dumps(document, indent=2))
    else:
        print(
            f"lockout guard: at most {config.max_rejections} rejected tests per {config.window_minutes} "
            f"minutes, counted in {guard.where}"
        )
        print("\n".join([*(describe(c) for c in counts), *(describe_suspension(*p) for p in suspensions)]))
    troubled = suspensions or any(count.refusing for count in counts)
    return ExitCode.PROBLEM if troubled else ExitCode.OK


class _Refused(Exception):
    """The reset is refused; `reason` goes to the audit trail, the message to the operator."""

    def __init__(self, reason: str, message: str, code: ExitCode = ExitCode.PROBLEM) -> None:
        super().__init__(message)
        self.reason = reason
        self.code = code


def ad_view(account: AccountConfig, force: bool, lookups: LookupGuard) -> str:
    """What AD says, for the audit row; raises _Refused when it forbids the reset or is unknown without
    `force`."""
    from bot.directory import PrecheckUnavailable, lockout_precheck

    if account.lookup_username is None:
        if not force:
            raise _Refused(
                "no_ad_view",
                f"account {account.id} has no lookup account, so AD's own count of bad passwords cannot be "
                "checked; re-run with --force to reset without it.",
            )
        return "AD not checked (no lookup account; --force)"
    try:
        view: LockoutPrecheck = lockout_precheck(account, lookups=lookups)
    except PrecheckUnavailable as exc:
        if not force:
            raise _Refused(
                "dc_unreachable",
                f"AD's lockout state cannot be read: {exc}. Re-run with --force to reset without it.",
                ExitCode.UNREACHABLE,
            ) from None
        return f"AD not checked ({exc}; --force)"
    if view.refuse is not None:
        raise _Refused(str(view.refuse), f"{view.message} ({view.describe()})")
    if view.threshold is None:
        if not force:
            raise _Refused(
                "no_ad_view",
                f"AD's lockout state cannot be read: {view.describe()}. Re-run with --force to reset "
                "without it.",
            )
        return f"AD not checked ({view.describe()}; --force)"
    return f"AD: {view.describe()}"


def _reset(
    settings: Settings, guard: LockoutGuard, lease: AccountLease, account: AccountConfig, force: bool
) -> int:
    """Under the account's lock (no test runs meanwhile): AD's view, the audit row, then the reset."""
    from bot.audit import AuditAction, AuditEvent, AuditOutcome, cli_actor, open_audit, record_or_log
    from bot.directory.lockout import GuardUnavailable

    try:
        count = guard.count(account.id)
    except GuardUnavailable as problem:
        return _unavailable(guard, problem)
    if not count.rejections:
        print(f"Nothing to reset: the lockout guard counts no test of account {account.id}.")
        return ExitCode.OK
    audit, actor = open_audit(settings), cli_actor()

    def reset_event(outcome: AuditOutcome, reason: str, detail: str) -> AuditEvent:
        return AuditEvent(
            actor=actor,
            action=AuditAction.LOCKOUT_GUARD,
            account=account.id,
            outcome=outcome,
            reason=reason,
            detail=detail,
        )

    try:
        view = ad_view(account, force, guard.lookups)
    except _Refused as refused:
        record_or_log(audit, reset_event(AuditOutcome.REFUSED, refused.reason, str(refused)))
        print(f"NOT RESET: {refused}")
        return refused.code
    detail = f"reset: {count.rejections} counted test(s) forgotten ({count.pending} never settled); {view}"
    audit.record(reset_event(AuditOutcome.OK, "reset", detail))
    try:
        guard.reset(lease)
    except GuardUnavailable as problem:
        record_or_log(audit, reset_event(AuditOutcome.ERROR, "reset", str(problem)))
        return _unavailable(guard, problem)
    print(f"RESET: account {account.id}: {count.rejections} counted test(s) forgotten. {view}.")
    return ExitCode.OK


def _lift_lookup(settings: Settings, guard: LockoutGuard, account: AccountConfig) -> int:
    """Lift the suspension of the account's lookup account, audited with the operator as actor."""
    from bot.audit import AuditAction, AuditEvent, AuditOutcome, cli_actor, open_audit
    from bot.directory import LookupBlocked
    from bot.directory.lockout import GuardUnavailable

    if account.lookup_username is None:
        print(f"NOT RESET: account {account.id} has no lookup account.")
        return ExitCode.PROBLEM
    try:
        lifted = guard.lookups.lift(account)
    except LookupBlocked as problem:
        return _unavailable(guard, GuardUnavailable(guard.where, problem.message))
    if lifted is None:
        print(f"Nothing to reset: the lookup account of account {account.id} is not suspended.")
        return ExitCode.OK
    detail = (
        f"lookup account {lifted.lookup_account}: suspension lifted (since "
        f"{lifted.since:%Y-%m-%d %H:%M} UTC, until {lifted.until:%Y-%m-%d %H:%M} UTC)"
    )
    event = AuditEvent(
        actor=cli_actor(),
        action=AuditAction.LOCKOUT_GUARD,
        account=account.id,
        outcome=AuditOutcome.OK,
        reason="lookup_reset",
        detail=detail,
    )
    open_audit(settings).record(event)
    print(f"RESET: {detail}. Its binds resume with the password it has now.")
    return ExitCode.OK


def run_reset(args: argparse.Namespace) -> int:
    from bot.directory.lockout import AccountBusy, AccountLocks, LockoutGuard, SharedLockUnavailable

    settings = context.load(args)
    account = settings.account(args.account)
    guard = LockoutGuard.for_settings(settings)
    if args.lookup:
        return _lift_lookup(settings, guard, account)
    try:
        with closing(AccountLocks.for_settings(settings)) as locks, locks.hold(account.id) as lease:
            return _reset(settings, guard, lease, account, args.force)
    except SharedLockUnavailable as busy:
        print(f"NOT RESET: {busy}")
        return ExitCode.UNREACHABLE
    except AccountBusy as busy:
        print(f"NOT RESET: {busy}")
        return ExitCode.PROBLEM
