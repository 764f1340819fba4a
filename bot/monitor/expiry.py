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
from bot.change import TEST_AUDIT_OUTCOME
from bot.config import AccountConfig, ConfigError
from bot.directory import (
    AccountBusy,
    ExpiryUnavailable,
    PasswordExpiry,
    read_password_expiry,
    run_connection_test,
)
from bot.monitor.context import MonitorRuntime
from bot.monitor.delivery import EXPIRY, flush_outbox
from bot.monitor.memory import MonitorState
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


def _with_saved_credential(rt: MonitorRuntime, account: AccountConfig) -> PasswordExpiry | None:
    """One guarded test of the saved credential; its result carries the expiry. None: try again later."""
    changes = rt.changes
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
    rt.audit(
        AuditAction.TEST,
        account.id,
        TEST_AUDIT_OUTCOME[result.outcome],
        result.reason.value if result.reason else "expiry_check",
        f"expiry check with the saved credential: {result.dc or 'no DC'}: {result.message}",
    )
    if not result.passed:
        log.error(
            "account %s: expiry check: the saved credential did not pass: %s", account.id, result.message
        )
        return PasswordExpiry()
    return result.expiry or PasswordExpiry()


def read_expiry(rt: MonitorRuntime, account: AccountConfig) -> PasswordExpiry | None:
    """The account's password expiry, at most one directory read per UTC day; None: not read today."""
    today = rt.clock().date()
    cached = rt.state.cached_expiry(account.id, today)
    if cached is not None:
        return cached
    if account.lookup_username:
        try:
            expiry = read_password_expiry(account)
        except (ExpiryUnavailable, ConfigError) as exc:
            log.warning("account %s: expiry not readable with the lookup account: %s", account.id, exc)
            expiry = PasswordExpiry()
    else:
        found = _with_saved_credential(rt, account)
        if found is None:
            return None
        expiry = found
    rt.state.remember_expiry(account.id, today, expiry)
    return expiry


def run_expiry_check(rt: MonitorRuntime) -> list[ExpiryWarning]:
    """Read every account's expiry; queue and send the warnings due. Returns the warnings queued."""
    thresholds = rt.settings.scheduler.expiry_warning_days
    warnings = []
    for account in (a for a in rt.settings.accounts if a.kind != "gmsa"):  # AD rotates a gMSA's password
        expiry = read_expiry(rt, account)
        if expiry is None or expiry.at is None:
            continue
        now = rt.clock()
        fired = rt.state.fired_thresholds(account.id, expiry.at)
        warning, crossed = due_warning(account.id, expiry.at, now, thresholds, fired)
        if warning is None:
            continue
        with rt.state.transaction() as db:
            MonitorState.mark_fired(db, account.id, expiry.at, crossed)
            MonitorState.enqueue(db, EXPIRY, warning.model_dump_json())
        rt.audit(
            AuditAction.ALERT,
            account.id,
            AuditOutcome.FAILED,
            "password_expiry",
            f"password expires {expiry.at:%Y-%m-%d %H:%M} UTC ({warning.days_left} day(s) left)",
        )
        warnings.append(warning)
    flush_outbox(rt.notifier, rt.state)
    return warnings
