"""`atp-bot verify`: is the password in AD still the one atp-bot saved? (drift)"""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import closing
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from bot.cli import context
from bot.cli.test_connection import render
from bot.config.core import UsageError
from bot.infra.exitcodes import ExitCode

if TYPE_CHECKING:
    from bot.change.portal import PortalStep
    from bot.config import AccountConfig, Settings
    from bot.directory import AccountLocks, ConnectionTestResult
    from bot.monitor.drift import DriftReport
    from bot.store import CredentialMetadata, CredentialStore


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "verify",
        help="check that the password in AD is still the one atp-bot saved (no bind as the account)",
        description="With each account's read-only lookup account, compare pwdLastSet with the last save "
        "through atp-bot and read badPwdCount and the lockout state on every domain controller. No "
        "password of the account is sent, unless --bind. Accounts without a lookup account are skipped (and "
        "named); atp-bot's own rejected tests (the lockout guard's ledger) are not blamed on the sensors. "
        "Exit 0 in sync or nothing saved to compare with, 1 drift, 3 unreachable.",
    )
    parser.add_argument("--account", metavar="ID", help="only this account (default: every account)")
    parser.add_argument("--json", action="store_true", help="print the reports as a JSON list")
    parser.add_argument(
        "--bind",
        action="store_true",
        help="also test the stored password with one bind, refused by the lockout guard like any test "
        "(embedded store only)",
    )
    parser.set_defaults(handler=run)


_NO_LOOKUP = "it has no lookup account (set lookup_username and lookup_password_env/lookup_password_file)"


def _accounts(settings: Settings, account_id: str | None) -> tuple[list[AccountConfig], list[str]]:
    """The accounts verify can read (those with a read-only lookup account), and a line for each other."""
    accounts = [settings.account(account_id)] if account_id else list(settings.accounts)
    readable = [a for a in accounts if a.lookup_username is not None]
    if not readable:
        names = ", ".join(a.id for a in accounts)
        raise UsageError(
            [f"account {names}: verify reads AD with the read-only lookup account: {_NO_LOOKUP}"]
        )
    return readable, [f"skipped account {a.id}: {_NO_LOOKUP}" for a in accounts if a not in readable]


def _open(settings: Settings) -> tuple[CredentialStore | None, str | None]:
    """The store, or why it cannot be opened (AD is still read: there is then nothing to compare with)."""
    from bot.store import StoreError, open_store

    try:
        return open_store(settings), None
    except StoreError as exc:
        return None, f"the store cannot be opened ({exc.message}), so nothing saved can be compared"


def _saved(store: CredentialStore | None, account_id: str) -> tuple[CredentialMetadata | None, list[str]]:
    from bot.store import StoreError

    if store is None:
        return None, []
    try:
        return store.metadata(account_id), []
    except StoreError as exc:
        return None, [f"the store cannot say when the password was last saved: {exc.message}"]


def _bind_test(
    settings: Settings, store: CredentialStore, locks: AccountLocks, account: AccountConfig
) -> list[str]:
    """One guarded bind with the stored password; its verdict as findings (empty when it passed)."""
    from bot.directory import AccountBusy, LockoutGuard, run_connection_test

    password = store.read(account.id)
    if password is None:
        return ["no stored password to test"]
    try:
        with locks.hold(account.id) as lease:
            result = run_connection_test(
                account, password, guard=LockoutGuard.for_settings(settings), lease=lease
            )
    except AccountBusy as busy:
        return [str(busy)]
    _audit(settings, result)
    return [] if result.passed else [f"the stored password did not pass: {line}" for line in render(result)]


def _audit(settings: Settings, result: ConnectionTestResult) -> None:
    from bot.audit import AuditAction, AuditEvent, cli_actor, open_audit, record_or_log
    from bot.change import TEST_AUDIT_OUTCOME, detail_of_test

    test = AuditEvent(
        actor=cli_actor(),
        action=AuditAction.TEST,
        account=result.account_id,
        outcome=TEST_AUDIT_OUTCOME[result.outcome],
        reason=result.reason.value if result.reason else "verify",
        detail=f"verify --bind with the stored password: {detail_of_test(result)}",
    )
    record_or_log(open_audit(settings), test)


def _report(
    settings: Settings, store: CredentialStore | None, locks: AccountLocks, account: AccountConfig, bind: bool
) -> DriftReport:
    from bot.directory import LockoutGuard
    from bot.monitor.drift import check_drift

    saved, problems = _saved(store, account.id)
    report = check_drift(account, saved, datetime.now(UTC), guard=LockoutGuard.for_settings(settings))
    findings = [*problems, *report.findings]
    in_sync = report.in_sync
    if bind and store is not None and not report.unreachable:
        failures = _bind_test(settings, store, locks, account)
        findings += failures
        in_sync = False if failures else in_sync
    return report.model_copy(update={"findings": findings, "in_sync": in_sync})


def exit_code(reports: list[DriftReport]) -> ExitCode:
    if any(r.in_sync is False for r in reports):
        return ExitCode.PROBLEM
    if any(r.unreachable for r in reports):
        return ExitCode.UNREACHABLE
    return ExitCode.OK


def run(args: argparse.Namespace) -> int:
    from bot.change.portal import waiting_since
    from bot.directory import AccountLocks
    from bot.monitor.drift import render_report

    settings = context.load(args)
    accounts, skipped = _accounts(settings, args.account)
    if args.bind and settings.store.backend != "embedded":
        raise UsageError(["--bind tests the stored password, which only the embedded store can read back"])
    store, unopened = _open(settings)
    with closing(AccountLocks.for_settings(settings)) as locks:
        reports = [_report(settings, store, locks, account, args.bind) for account in accounts]
    notes = [*([unopened] if unopened else []), *skipped]
    portal = _portal_steps(settings)
    if args.json:
        listed = [r.as_json() | {"portal_step": _portal_json(portal, r.account)} for r in reports]
        print(json.dumps(listed, indent=2))
        for note in notes:
            print(f"atp-bot verify: {note}", file=sys.stderr)
    else:
        blocks = ["\n".join(render_report(r)) for r in reports]
        if notes:
            blocks.append("\n".join(notes))
        blocks += [f"PORTAL STEP PENDING: account {a}: {waiting_since(step)}" for a, step in portal.items()]
        print("\n\n".join(blocks))
    return exit_code(reports)


def _portal_json(portal: dict[str, PortalStep], account_id: str) -> dict[str, str] | None:
    step = portal.get(account_id)
    if step is None:
        return None
    return {"pending_since": step.saved_at.isoformat().replace("+00:00", "Z"), "saved_by": step.saved_by}


def _portal_steps(settings: Settings) -> dict[str, PortalStep]:
    """The pending portal steps: a password saved that Defender for Identity does not have yet."""
    from bot.change.portal import PortalError, pending_steps

    try:
        return pending_steps(settings)
    except PortalError as exc:
        print(f"WARNING: {exc}", file=sys.stderr)
        return {}
