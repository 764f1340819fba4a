"""Keeps atp-bot from ever locking out a directory service account.

Two mechanisms, both per account:
- `hold_account` is an exclusive, non-blocking lock (a `flock` in the state directory, so it also holds
  across processes: the bot and a CLI run). One test or change per account at a time; a second one is
  told at once and waits for nothing.
  With several replicas (`[scheduler] leader_lock_url`), `atp-bot run` also shares the lock with the
  other replicas through `share_account_locks` (a PostgreSQL advisory lock per account).
- `LockoutGuard` persists every rejected test and refuses new tests once `max_rejections` happened within
  `window_minutes`, well below any sane AD `lockoutThreshold`.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from bot.config import LockoutGuardConfig


class AccountBusy(Exception):
    def __init__(self, account_id: str) -> None:
        super().__init__(
            f"Another test or change for account {account_id} is in progress; try again when it ends."
        )
        self.account_id = account_id


class SharedLockUnavailable(AccountBusy):
    def __init__(self, account_id: str) -> None:
        Exception.__init__(
            self,
            f"The lock that account {account_id} shares with the other atp-bot replicas cannot be reached "
            "(database unavailable); nothing was tested or changed. Try again shortly.",
        )
        self.account_id = account_id


# Takes the account's lock shared with other replicas: yields True while held, False when taken elsewhere.
SharedLock = Callable[[str], AbstractContextManager[bool]]
_shared_lock: SharedLock | None = None


def share_account_locks(lock: SharedLock | None) -> None:
    """From now on `hold_account` also takes `lock(account_id)` (None: this host's lock only)."""
    global _shared_lock
    _shared_lock = lock


@dataclass(frozen=True)
class AccountLease:
    """Proof that the caller holds the account's lock; the guard's methods require one."""

    account_id: str


@contextmanager
def hold_account(state_dir: Path, account_id: str) -> Iterator[AccountLease]:
    locks = state_dir / "locks"
    locks.mkdir(mode=0o700, exist_ok=True)
    fd = os.open(locks / f"{account_id}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise AccountBusy(account_id) from None
        with ExitStack() as stack:
            if _shared_lock is not None:
                try:
                    held = stack.enter_context(_shared_lock(account_id))
                except SQLAlchemyError:
                    raise SharedLockUnavailable(account_id) from None
                if not held:
                    raise AccountBusy(account_id)
            yield AccountLease(account_id)
    finally:
        os.close(fd)


def now_utc() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class GuardDecision:
    allowed: bool
    recent_rejections: int
    retry_after: datetime | None
    message: str


class LockoutGuard:
    """Persisted count of rejected tests per account (SQLite in the state directory)."""

    def __init__(
        self, path: Path, config: LockoutGuardConfig, clock: Callable[[], datetime] = now_utc
    ) -> None:
        self._path = path
        self._config = config
        self._clock = clock
        with closing(self._connect()) as db, db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS rejected_tests (account_id TEXT NOT NULL, at TEXT NOT NULL,"
                " reason TEXT NOT NULL)"
            )

    @classmethod
    def in_state_dir(cls, state_dir: Path, config: LockoutGuardConfig) -> LockoutGuard:
        return cls(state_dir / "lockout-guard.sqlite", config)

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self._path, timeout=30)

    @property
    def _window(self) -> timedelta:
        return timedelta(minutes=self._config.window_minutes)

    def _recent(self, account_id: str) -> list[datetime]:
        since = (self._clock() - self._window).isoformat()
        with closing(self._connect()) as db:
            rows = db.execute(
                "SELECT at FROM rejected_tests WHERE account_id = ? AND at > ? ORDER BY at",
                (account_id, since),
            ).fetchall()
        return [datetime.fromisoformat(at) for (at,) in rows]

    def check(self, lease: AccountLease) -> GuardDecision:
        recent = self._recent(lease.account_id)
        limit = self._config.max_rejections
        if len(recent) < limit:
            return GuardDecision(True, len(recent), None, "")
        retry_after = recent[-limit] + self._window
        return GuardDecision(
            False,
            len(recent),
            retry_after,
            f"{len(recent)} tests of account {lease.account_id} were rejected in the last "
            f"{self._config.window_minutes} minutes; to protect the account from lockout, atp-bot refuses "
            f"more tests until {retry_after:%Y-%m-%d %H:%M} UTC. Check the password and the account in AD.",
        )

    def record_rejection(self, lease: AccountLease, reason: str) -> None:
        now = self._clock()
        with closing(self._connect()) as db, db:
            db.execute(
                "INSERT INTO rejected_tests (account_id, at, reason) VALUES (?, ?, ?)",
                (lease.account_id, now.isoformat(), reason),
            )
            db.execute("DELETE FROM rejected_tests WHERE at < ?", ((now - 2 * self._window).isoformat(),))
