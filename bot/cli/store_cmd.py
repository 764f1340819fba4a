"""`atp-bot store init|status|rotate-key`: create the embedded store, show what is saved (never the secret),
and re-encrypt it with a new key while no bot runs on the state directory."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from bot.cli import context
from bot.cli.audit_cmd import key_created_lines, print_key_warning
from bot.infra.exitcodes import ExitCode

if TYPE_CHECKING:
    from bot.audit import AuditAction, AuditEvent, AuditOutcome
    from bot.config import Settings
    from bot.store import CredentialMetadata, CredentialStore, StoreError


def register(commands: Any) -> None:
    store = commands.add_parser("store", help="the credential store that Save writes to")
    actions = store.add_subparsers(dest="store_command", metavar="ACTION", required=True)
    init = actions.add_parser(
        "init", help="create the embedded store and its key in the state directory (never overwrites)"
    )
    init.set_defaults(handler=run_init)
    status = actions.add_parser(
        "status", help="show per account whether a credential is saved, when and by whom"
    )
    status.set_defaults(handler=run_status)
    rotate = actions.add_parser(
        "rotate-key", help="re-encrypt the embedded store with a new key file (the old key stops working)"
    )
    rotate.set_defaults(handler=run_rotate_key)


def _no_password_held_with_the_store_key(settings: Settings) -> None:
    """Approval requests seal their tested password with the store's key unless `[approvals]` has its own:
    a rotation would leave them unopenable, so it waits until none holds one."""
    from bot.change.approvals import ApprovalError, open_approvals
    from bot.store import StoreError

    if settings.approvals.key_env or settings.approvals.key_file:
        return
    try:
        requests = open_approvals(settings)
        held = requests.sealed() if requests else 0
    except ApprovalError as exc:
        raise StoreError(f"cannot tell whether approval requests hold a password: {exc}") from None
    if held:
        raise StoreError(
            f"{held} approval request(s) hold a tested password sealed with this key: approve, deny or let "
            "them expire first (or give [approvals] its own key_file), then rotate",
            "busy",
        )


def _error(exc: StoreError) -> int:
    from bot.store import store_exit_code

    print(f"atp-bot: store error: {exc.message}", file=sys.stderr)
    return store_exit_code(exc.reason)


def _store_event(action: AuditAction, outcome: AuditOutcome, reason: str | None, detail: str) -> AuditEvent:
    """The audit event of a store operation run from a shell (it concerns no one account)."""
    from bot.audit import AuditEvent, cli_actor

    return AuditEvent(
        actor=cli_actor(), action=action, account=None, outcome=outcome, reason=reason, detail=detail
    )


def _embedded_only(settings: Settings, action: str) -> bool:
    if settings.store.backend == "embedded":
        return True
    print(
        f"atp-bot: store.backend is {settings.store.backend!r}: {action} applies to the embedded store only",
        file=sys.stderr,
    )
    return False


def run_init(args: argparse.Namespace) -> int:
    from bot.audit.trail import AuditAction, AuditOutcome, init_audit_key, open_audit
    from bot.store import StoreError
    from bot.store.embedded import init_embedded_store, store_exists, store_path

    settings = context.load(args)
    if not _embedded_only(settings, "init"):
        return ExitCode.USAGE
    key = init_audit_key(settings)
    print("\n".join(key_created_lines(key)))  # before the trail's first row
    print_key_warning(key)
    if store_exists(settings):
        print(f"the embedded store {store_path(settings)} already exists; nothing was changed")
        print("`atp-bot store status` shows what it holds")
        return ExitCode.OK
    audit = open_audit(settings)
    try:
        result = init_embedded_store(settings)
    except StoreError as exc:
        audit.record(_store_event(AuditAction.STORE_INIT, AuditOutcome.REFUSED, exc.reason, exc.message))
        return _error(exc)
    audit.record(_store_event(AuditAction.STORE_INIT, AuditOutcome.OK, None, f"{result.store_path}"))
    print(f"created the embedded store {result.store_path}")
    if result.key_created:
        print(f"created its key in {result.key_source.removeprefix('key file ')} (mode 0600)")
        print("back the key up somewhere safe: without it the saved credentials cannot be read")
    else:
        print(f"the key comes from the {result.key_source}")
    return ExitCode.OK


def status_lines(settings: Settings, store: CredentialStore) -> list[str]:
    lines = [f"store: {store.backend}"]
    for account in settings.accounts:
        meta: CredentialMetadata | None = store.metadata(account.id)
        if meta is None:
            lines.append(f"  {account.id}: no credential saved through atp-bot")
        else:
            when = meta.saved_at.strftime("%Y-%m-%d %H:%M:%S UTC")
            lines.append(f"  {account.id}: saved {when} by {meta.saved_by}")
    return lines


def run_status(args: argparse.Namespace) -> int:
    from bot.store import StoreError, open_store

    settings = context.load(args)
    try:
        store = open_store(settings)
        lines = status_lines(settings, store)
    except StoreError as exc:
        return _error(exc)
    print("\n".join(lines))
    return ExitCode.OK


def run_rotate_key(args: argparse.Namespace) -> int:
    from bot.audit import AuditAction, AuditOutcome, open_audit
    from bot.store import StoreError
    from bot.store.embedded import rotate_key

    settings = context.load(args)
    if not _embedded_only(settings, "rotate-key"):
        return ExitCode.USAGE
    audit = open_audit(settings)
    action = AuditAction.STORE_ROTATE_KEY
    try:
        _no_password_held_with_the_store_key(settings)
        result = rotate_key(settings)
    except StoreError as exc:
        outcome = AuditOutcome.REFUSED if exc.reason == "busy" else AuditOutcome.FAILED
        audit.record(_store_event(action, outcome, exc.reason, exc.message))
        return _error(exc)
    detail = f"key id {result.old_key_id} -> {result.new_key_id}, {result.credentials} credential(s)"
    audit.record(_store_event(action, AuditOutcome.OK, None, detail))
    print(f"re-encrypted {result.credentials} credential(s) with a new key in {result.key_path}")
    print(
        f"key id {result.old_key_id} -> {result.new_key_id}; back the new key up, the old one no longer works"
    )
    return ExitCode.OK
