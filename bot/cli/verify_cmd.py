"""`atp-bot verify`: is the password in AD still the one atp-bot saved? (drift, issue 16.2)"""

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
        "password of the account is sent, unless --bind. Exit 0 in sync, 1 drift, 3 unreachable.",
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


def _accounts(settings: Settings, account_id: str | None) -> list[AccountConfig]:
    accounts = [settings.account(account_id)] if account_id else list(settings.accounts)
    missing = [a.id for a in accounts if a.lookup_username is None]
    if missing:
        raise UsageError(
            [
                f"account {', '.join(missing)}: verify reads AD with the read-only lookup account: set "
                "lookup_username and lookup_password_env/lookup_password_file"
            ]
        )
    return accounts


def _saved(store: CredentialStore, account_id: str) -> tuple[CredentialMetadata | None, list[str]]:
    from bot.store import StoreError

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
    from bot.change import TEST_AUDIT_OUTCOME

    test = AuditEvent(
        actor=cli_actor(),
        action=AuditAction.TEST,
        account=result.account_id,
        outcome=TEST_AUDIT_OUTCOME[result.outcome],
        reason=result.reason.value if result.reason else "verify",
        detail=f"verify --bind with the stored password: {result.dc or 'no DC'}: {result.message}",
    )
    record_or_log(open_audit(settings), test)


def _report(
    settings: Settings, store: CredentialStore, locks: AccountLocks, account: AccountConfig, bind: bool
) -> DriftReport:
    from bot.monitor.drift import check_drift

    saved, problems = _saved(store, account.id)
    report = check_drift(account, saved, datetime.now(UTC))
    findings = [*problems, *report.findings]
    in_sync = report.in_sync
    if bind and not report.unreachable:
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
    from bot.store import open_store

    settings = context.load(args)
    accounts = _accounts(settings, args.account)
    if args.bind and settings.store.backend != "embedded":
        raise UsageError(["--bind tests the stored password, which only the embedded store can read back"])
    store = open_store(settings)
    with closing(AccountLocks.for_settings(settings)) as locks:
        reports = [_report(settings, store, locks, account, args.bind) for account in accounts]
    portal = _portal_steps(settings)
    if args.json:
        print(
            json.dumps(
                [r.as_json() | {"portal_step": _portal_json(portal, r.account)} for r in reports], indent=2
            )
        )
    else:
        print("\n\n".join("\n".join(render_report(r)) for r in reports))
        for account in accounts:
            if account.id in portal:
                print(f"\nPORTAL STEP PENDING: account {account.id}: {waiting_since(portal[account.id])}")
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
