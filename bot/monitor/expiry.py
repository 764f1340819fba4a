"""Password expiry warnings: per account, at configured days before `msDS-UserPasswordExpiryTimeComputed`.

The expiry is read with the account's read-only lookup account when one is configured. Without it,
the saved credential is tested (one guarded bind under the account lock, at most once per UTC day).
Each threshold warns once per expiry date; a new expiry date (after a change) starts over.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from datetime import datetime, timedelta

from bot.audit import AuditAction, AuditOutcome
from bot.change import TEST_AUDIT_OUTCOME, detail_of_test
from bot.config import AccountConfig, ConfigError
from bot.directory import (
    AccountBusy,
    ExpiryUnavailable,
    PasswordExpiry,
    read_password_expiry,
    run_connection_test,
)
from bot.monitor.context import MonitorContext
from bot.monitor.delivery import EXPIRY, flush_outbox
from bot.monitor.lookup_watch import queue_lookup_suspensions
from bot.monitor.memory import MonitorMemory
from bot.monitor.models import ExpiryWarning
from bot.store import StoreError

log = logging.getLogger(__name__)


def due_warning(
    account_id: str, expires_at: datetime, now: datetime, thresholds: Iterable[int], fired: set[int]
) -> tuple[ExpiryWarning | None, set[int]]:
    """The warning to send now (if a threshold was newly crossed) and every threshold crossed so far."""
    remaining = expires_at - now
    crossed = {t for t in thresholds if remaining <= timedelta(days=t)}
    new = crossed - fired
    if not new:
        return None, crossed
    days_left = math.floor(remaining.total_seconds() / 86400)
    return ExpiryWarning(
        account_id=account_id, expires_at=expires_at, days_left=days_left, threshold=min(new)
    ), crossed


def _with_saved_credential(ctx: MonitorContext, account: AccountConfig) -> PasswordExpiry | None:
    """One guarded test of the saved credential; its result carries the expiry. None: try again later."""
    changes = ctx.changes
    try:
        password = changes.store.read(account.id)
    except StoreError as exc:
        log.warning("account %s: expiry not checked: the store cannot be read: %s", account.id, exc.message)
        return None
    if password is None:
        log.info("account %s: expiry not checked: no saved credential and no lookup account", account.id)
        return PasswordExpiry()
    try:
        with changes.locks.hold(account.id) as lease:
            result = run_connection_test(account, password, guard=changes.guard, lease=lease)
    except AccountBusy:
        log.info("account %s: expiry check postponed: a test or change is in progress", account.id)
        return None
    ctx.audit(
        AuditAction.TEST,
        account.id,
        TEST_AUDIT_OUTCOME[result.outcome],
        result.reason.value if result.reason else "expiry_check",
        f"expiry check with the saved credential: {detail_of_test(result)}",
    )
    if not result.passed:
        log.error(
            "account %s: expiry check: the saved credential did not pass: %s", account.id, result.message
        )
        return PasswordExpiry()
    return result.expiry or PasswordExpiry()


def read_expiry(ctx: MonitorContext, account: AccountConfig) -> PasswordExpiry | None:
    """The account's password expiry, at most one directory read per UTC day; None: not read today."""
    today = ctx.clock().date()
    cached = ctx.memory.cached_expiry(account.id, today)
    if cached is not None:
        return cached
    if account.lookup_username:
        try:
            expiry = read_password_expiry(account, lookups=ctx.changes.guard.lookups)
        except (ExpiryUnavailable, ConfigError) as exc:
            log.warning("account %s: expiry not readable with the lookup account: %s", account.id, exc)
            expiry = PasswordExpiry()
    else:
        found = _with_saved_credential(ctx, account)
        if found is None:
            return None
        expiry = found
    ctx.memory.remember_expiry(account.id, today, expiry)
    return expiry


def run_expiry_check(ctx: MonitorContext) -> list[ExpiryWarning]:
    """Read every account's expiry; queue and send the warnings due. Returns the warnings queued."""
    thresholds = ctx.settings.scheduler.expiry_warning_days
    warnings = []
    for account in (a for a in ctx.settings.accounts if a.kind != "gmsa"):  # AD rotates a gMSA's password
        expiry = read_expiry(ctx, account)
        if expiry is None or expiry.at is None:
            continue
        now = ctx.clock()
        fired = ctx.memory.fired_thresholds(account.id, expiry.at)
        warning, crossed = due_warning(account.id, expiry.at, now, thresholds, fired)
        if warning is None:
            continue
        with ctx.memory.transaction() as db:
            MonitorMemory.mark_fired(db, account.id, expiry.at, crossed)
            MonitorMemory.enqueue(db, EXPIRY, warning.model_dump_json())
        ctx.audit(
            AuditAction.ALERT,
            account.id,
            AuditOutcome.FAILED,
            "password_expiry",
            f"password expires {expiry.at:%Y-%m-%d %H:%M} UTC ({warning.days_left} day(s) left)",
        )
        warnings.append(warning)
    queue_lookup_suspensions(ctx)
    flush_outbox(ctx.notifier, ctx.memory)
    return warnings
