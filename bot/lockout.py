"""Keeps atp-bot from ever locking out a directory service account.

Two mechanisms, both per account:
- `hold_account` is an exclusive, non-blocking lock (a `flock` in the state directory, so it also holds
  across processes: the bot and a CLI run). One test or change per account at a time; a second one is
  told at once and waits for nothing.
  With several replicas (`[scheduler] leader_lock_url`), `atp-bot run` and the CLI also share the lock
  with the other replicas through `replica_account_locks` (a PostgreSQL advisory lock per account).
- `LockoutGuard` persists every rejected test and refuses new tests once `max_rejections` happened within
  `window_minutes`, well below any sane AD `lockoutThreshold`; with replicas, in their shared database.
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Column, MetaData, Table, Text, delete, insert, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from bot.advisory import AdvisoryLocks, lock_engine
from bot.config import LockoutGuardConfig, Settings
from bot.dbschema import create_idempotently
from bot.state import sqlite_engine, state_dir

log = logging.getLogger(__name__)


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


@contextmanager
def replica_account_locks(settings: Settings) -> Iterator[None]:
    """While inside, with replicas (`[scheduler] leader_lock_url`), `hold_account` also takes the
    account's advisory lock in the shared database: one test or change per account across every replica
    and every CLI run on any host. Without replicas, nothing changes."""
    url = settings.scheduler.leader_lock()
    if url is None:
        yield
        return
    locks = AdvisoryLocks(url, settings.scheduler.leader_poll_seconds)
    share_account_locks(lambda account_id: locks.hold(f"atp-bot:account:{account_id}"))
    try:
        yield
    finally:
        share_account_locks(None)
        locks.close()


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


_metadata = MetaData()
_rejected_tests = Table(
    "rejected_tests",
    _metadata,
    Column("account_id", Text, nullable=False),
    Column("at", Text, nullable=False),  # ISO 8601 UTC: compares in time order as text
    Column("reason", Text, nullable=False),
)
GUARD_FILE = "lockout-guard.sqlite"


class LockoutGuard:
    """Persisted count of rejected tests per account.

    Kept in SQLite in the state directory; with replicas (`[scheduler] leader_lock_url`) in the shared
    PostgreSQL database instead, so that every replica and every CLI run counts against one limit: a
    wrong password that Slack sent to one replica, then to the other, must not get twice the tries.
    A ledger that cannot be read refuses the test (nothing is sent to AD).
    """

    def __init__(
        self, engine: Engine, config: LockoutGuardConfig, clock: Callable[[], datetime] = now_utc
    ) -> None:
        self._engine = engine
        self._config = config
        self._clock = clock
        self._ready = False

    @classmethod
    def at_path(
        cls, path: Path, config: LockoutGuardConfig, clock: Callable[[], datetime] = now_utc
    ) -> LockoutGuard:
        return cls(sqlite_engine(path), config, clock)

    @classmethod
    def for_settings(cls, settings: Settings) -> LockoutGuard:
        """The guard this configuration's processes share: the replicas' database when there is one."""
        shared = settings.scheduler.leader_lock()
        if shared is None:
            return cls.at_path(state_dir(settings) / GUARD_FILE, settings.lockout_guard)
        return cls(lock_engine(shared, settings.scheduler.leader_poll_seconds), settings.lockout_guard)

    def _prepare(self) -> None:
        if not self._ready:
            create_idempotently(lambda: _metadata.create_all(self._engine))
            self._ready = True

    @property
    def _window(self) -> timedelta:
        return timedelta(minutes=self._config.window_minutes)

    def _recent(self, account_id: str) -> list[datetime]:
        self._prepare()
        since = (self._clock() - self._window).isoformat()
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(_rejected_tests.c.at)
                .where(_rejected_tests.c.account_id == account_id, _rejected_tests.c.at > since)
                .order_by(_rejected_tests.c.at)
            ).scalars()
            return [datetime.fromisoformat(at) for at in rows]

    def check(self, lease: AccountLease) -> GuardDecision:
        try:
            recent = self._recent(lease.account_id)
        except SQLAlchemyError as exc:
            log.error("lockout guard: cannot read %s: %s", self._where, type(exc).__name__)
            return GuardDecision(
                False,
                0,
                None,
                f"atp-bot cannot read its count of rejected tests for account {lease.account_id} "
                f"({self._where} is unavailable), so it does not risk a test that could lock the account. "
                "Nothing was sent to Active Directory; try again when it is back.",
            )
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
        """Count a rejected test. If the ledger cannot be written, say so loudly: the count is then low
        until it can, and the next `check` refuses while the ledger stays unreadable."""
        now = self._clock()
        try:
            self._prepare()
            with self._engine.begin() as conn:
                conn.execute(
                    insert(_rejected_tests).values(
                        account_id=lease.account_id, at=now.isoformat(), reason=str(reason)
                    )
                )
                conn.execute(
                    delete(_rejected_tests).where(_rejected_tests.c.at < (now - 2 * self._window).isoformat())
                )
        except SQLAlchemyError as exc:
            log.error(
                "lockout guard: cannot record a rejected test of account %s in %s: %s",
                lease.account_id,
                self._where,
                type(exc).__name__,
            )

    @property
    def _where(self) -> str:
        return "the shared database" if self._engine.dialect.name != "sqlite" else "the state directory"
