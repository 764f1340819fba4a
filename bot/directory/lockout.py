"""Keeps atp-bot from ever locking out a directory service account.

Two mechanisms, both per account:
- `AccountLocks.hold` is an exclusive, non-blocking lock (a `flock` in the state directory, so it also
  holds across processes: the bot and a CLI run). One test or change per account at a time; a second
  one is told at once and waits for nothing. With several replicas (`[scheduler] leader_lock_url`), it
  also takes the account's PostgreSQL advisory lock in their shared database.
- `LockoutGuard` persists every test before its password is sent, counts it until its verdict says it was
  accepted, and refuses new tests once `max_rejections` were counted within `window_minutes`, well below
  any sane AD `lockoutThreshold`; with replicas, in their shared database. It fails closed.
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Column, MetaData, Table, Text, delete, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from bot.config import LockoutGuardConfig, Settings
from bot.directory.ad_errors import Reason
from bot.directory.lookup_guard import LookupGuard
from bot.infra.advisory import AdvisoryLocks, lock_engine
from bot.infra.dbschema import create_idempotently
from bot.infra.dbschema import db_error_summary as _cause
from bot.infra.logging_setup import TOLD
from bot.infra.state_dir import private_file, sqlite_engine, state_dir

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


@dataclass(frozen=True)
class AccountLease:
    """Proof that the caller holds the account's lock; the guard's methods require one."""

    account_id: str


class AccountLocks:
    """One test or change per account at a time: this host's `flock` in the state directory and, with
    replicas (`[scheduler] leader_lock_url`), the account's advisory lock in their shared database, so
    that no two replicas or CLI runs on any host test or change one account at once.

    The change path makes one from its configuration (`for_settings`) and passes it down, so that no
    entry point can take the host's lock and forget the replicas' one."""

    def __init__(self, state_dir: Path, replicas: AdvisoryLocks | None = None) -> None:
        self._state_dir = state_dir
        self._replicas = replicas

    @classmethod
    def for_settings(cls, settings: Settings, directory: Path | None = None) -> AccountLocks:
        """The locks of this configuration's processes; `directory`: the state directory (default: the
        configuration's). Nothing connects until a lock is taken."""
        url = settings.scheduler.leader_lock()
        replicas = None if url is None else AdvisoryLocks(url, settings.scheduler.leader_poll_seconds)
        return cls(directory or state_dir(settings), replicas)

    @contextmanager
    def hold(self, account_id: str) -> Iterator[AccountLease]:
        """Hold the account's lock while inside; AccountBusy at once when another holds it, and
        SharedLockUnavailable when the replicas' database cannot be reached (nothing is then tested)."""
        locks = self._state_dir / "locks"
        locks.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(locks / f"{account_id}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise AccountBusy(account_id) from None
            with ExitStack() as stack:
                if self._replicas is not None:
                    self._hold_across_replicas(stack, self._replicas, account_id)
                yield AccountLease(account_id)
        finally:
            os.close(fd)

    @staticmethod
    def _hold_across_replicas(stack: ExitStack, replicas: AdvisoryLocks, account_id: str) -> None:
        try:
            held = stack.enter_context(replicas.hold(f"atp-bot:account:{account_id}"))
        except SQLAlchemyError:
            raise SharedLockUnavailable(account_id) from None
        if not held:
            raise AccountBusy(account_id)

    def close(self) -> None:
        """Close the connections to the replicas' database (the host's locks need no closing)."""
        if self._replicas is not None:
            self._replicas.close()


def now_utc() -> datetime:
    return datetime.now(UTC)


class GuardUnavailable(Exception):
    """The guard's ledger cannot be read or written; the message names where and why, never a secret."""

    def __init__(self, where: str, cause: str) -> None:
        super().__init__(f"{where} ({cause})")
        self.where = where
        self.cause = cause


@dataclass(frozen=True)
class PendingAttempt:
    """A test counted in the ledger before its password leaves: the key of its pending row."""

    account_id: str
    at: datetime


@dataclass(frozen=True)
class GuardDecision:
    allowed: bool
    recent_rejections: int
    retry_after: datetime | None
    message: str
    reason: Reason | None = None  # why a test is refused
    attempt: PendingAttempt | None = None  # when allowed: the pending row to settle after the test


@dataclass(frozen=True)
class GuardCount:
    """What the ledger counts against one account within the window (pending attempts included)."""

    account_id: str
    counted: tuple[datetime, ...]  # oldest first
    pending: int  # of which never settled: the process died mid-test, AD may have counted them
    limit: int
    window: timedelta

    @property
    def rejections(self) -> int:
        return len(self.counted)

    @property
    def refusing(self) -> bool:
        return len(self.counted) >= self.limit

    @property
    def refused_until(self) -> datetime | None:
        """When the count drops below the limit again (None: not refusing)."""
        return self.counted[-self.limit] + self.window if self.refusing else None

    @property
    def oldest_expires_at(self) -> datetime | None:
        """When the oldest counted attempt leaves the window (None: nothing counted)."""
        return self.counted[0] + self.window if self.counted else None


_metadata = MetaData()
_rejected_tests = Table(
    "rejected_tests",
    _metadata,
    Column("account_id", Text, nullable=False),
    Column("at", Text, nullable=False),  # ISO 8601 UTC: compares in time order as text
    Column("reason", Text, nullable=False),  # PENDING until the test's verdict is recorded
)
GUARD_FILE = "lockout-guard.sqlite"
# The reason of a row written before the password is sent; it counts as a rejection until settled.
PENDING = "pending"


class LockoutGuard:
    """Persisted count of rejected tests per account.

    Kept in SQLite in the state directory; with replicas (`[scheduler] leader_lock_url`) in the shared
    PostgreSQL database instead, so that every replica and every CLI run counts against one limit: a
    wrong password that Slack sent to one replica, then to the other, must not get twice the tries.

    It fails closed: a test is admitted only once a pending row for it is durably written, and that row
    counts as a rejection until the test's verdict settles it. A ledger that cannot be read or written
    refuses the test (nothing is sent to AD); a process that dies mid-bind leaves its row counted.

    `lookups` keeps, in the same ledger, the lookup accounts' suspensions (bot.directory.lookup_guard);
    its fingerprint key lives in `state`, the state directory (default: the ledger file's directory).
    """

    def __init__(
        self,
        engine: Engine,
        config: LockoutGuardConfig,
        clock: Callable[[], datetime] = now_utc,
        *,
        path: Path | None = None,
        state: Path | None = None,
    ) -> None:
        self._engine = engine
        self._config = config
        self._clock = clock
        self._path = path
        self._ready = False
        self.lookups = LookupGuard(engine, state or (path and path.parent), clock, ledger_file=path)

    @classmethod
    def at_path(
        cls, path: Path, config: LockoutGuardConfig, clock: Callable[[], datetime] = now_utc
    ) -> LockoutGuard:
        return cls(sqlite_engine(path), config, clock, path=path)

    @classmethod
    def for_settings(cls, settings: Settings) -> LockoutGuard:
        """The guard this configuration's processes share: the replicas' database when there is one."""
        shared = settings.scheduler.leader_lock()
        if shared is None:
            return cls.at_path(state_dir(settings) / GUARD_FILE, settings.lockout_guard)
        engine = lock_engine(shared, settings.scheduler.leader_poll_seconds)
        return cls(engine, settings.lockout_guard, state=state_dir(settings))

    @property
    def config(self) -> LockoutGuardConfig:
        return self._config

    @property
    def shared(self) -> bool:
        """True when the ledger is the replicas' database (a peer), False for the state directory's file."""
        return self._engine.dialect.name != "sqlite"

    @property
    def where(self) -> str:
        return "the shared database" if self.shared else "the state directory"

    def _prepare(self) -> None:
        if not self._ready:
            if self._path is not None:
                private_file(self._path)
            create_idempotently(lambda: _metadata.create_all(self._engine))
            self._ready = True

    @property
    def _window(self) -> timedelta:
        return timedelta(minutes=self._config.window_minutes)

    def count(self, account_id: str) -> GuardCount:
        """The account's counted attempts within the window. Raises GuardUnavailable."""
        since = (self._clock() - self._window).isoformat()
        query = (
            select(_rejected_tests.c.at, _rejected_tests.c.reason)
            .where(_rejected_tests.c.account_id == account_id, _rejected_tests.c.at > since)
            .order_by(_rejected_tests.c.at)
        )
        try:
            self._prepare()
            with self._engine.connect() as conn:
                rows = conn.execute(query).all()
        except (SQLAlchemyError, OSError) as exc:
            log.error("lockout guard: cannot read %s: %s", self.where, _cause(exc), extra=TOLD)
            raise GuardUnavailable(self.where, _cause(exc)) from None
        return GuardCount(
            account_id,
            tuple(datetime.fromisoformat(at) for at, _ in rows),
            sum(reason == PENDING for _, reason in rows),
            self._config.max_rejections,
            self._window,
        )

    def admit(self, lease: AccountLease) -> GuardDecision:
        """Allow a test only below the limit and once its pending row is durably written."""
        try:
            count = self.count(lease.account_id)
        except GuardUnavailable as problem:
            return self._refuse_unreadable(lease, problem)
        if count.refusing:
            return self._refuse_at_limit(lease, count)
        attempt = PendingAttempt(lease.account_id, self._clock())
        try:
            self._write_pending(attempt)
        except (SQLAlchemyError, OSError) as exc:
            log.error(
                "lockout guard: cannot record a test of account %s in %s: %s",
                lease.account_id,
                self.where,
                _cause(exc),
                extra=TOLD,
            )
            return GuardDecision(
                False,
                count.rejections,
                None,
                f"atp-bot cannot record the attempt: {self.where} cannot be written ({_cause(exc)}), and a "
                f"test it cannot count could lock account {lease.account_id} out; nothing was sent to AD. "
                "Try again when it can be written.",
                Reason.GUARD_UNAVAILABLE,
            )
        return GuardDecision(True, count.rejections, None, "", attempt=attempt)

    def _write_pending(self, attempt: PendingAttempt) -> None:
        oldest_kept = (attempt.at - 2 * self._window).isoformat()
        with self._engine.begin() as conn:
            conn.execute(
                insert(_rejected_tests).values(
                    account_id=attempt.account_id, at=attempt.at.isoformat(), reason=PENDING
                )
            )
            conn.execute(delete(_rejected_tests).where(_rejected_tests.c.at < oldest_kept))

    def _refuse_unreadable(self, lease: AccountLease, problem: GuardUnavailable) -> GuardDecision:
        return GuardDecision(
            False,
            0,
            None,
            f"atp-bot cannot read its count of rejected tests for account {lease.account_id} "
            f"({problem.where} is unavailable: {problem.cause}), so it does not risk a test that could lock "
            "the account. Nothing was sent to Active Directory; try again when it is back.",
            Reason.GUARD_UNAVAILABLE,
        )

    def _refuse_at_limit(self, lease: AccountLease, count: GuardCount) -> GuardDecision:
        retry_after = count.refused_until
        return GuardDecision(
            False,
            count.rejections,
            retry_after,
            f"{count.rejections} tests of account {lease.account_id} were rejected in the last "
            f"{self._config.window_minutes} minutes; to protect the account from lockout, atp-bot refuses "
            f"more tests until {retry_after:%Y-%m-%d %H:%M} UTC. Check the password and the account in AD.",
            Reason.GUARD_LIMIT,
        )

    def settle(self, attempt: PendingAttempt, rejection: Reason | None) -> bool:
        """Record an admitted test's verdict: `rejection` (it counts), or None (accepted, or the password
        never left: the row goes). False when the ledger cannot be written: the row stays pending and so
        counts as a rejection until the window passes."""
        row = (
            (_rejected_tests.c.account_id == attempt.account_id)
            & (_rejected_tests.c.at == attempt.at.isoformat())
            & (_rejected_tests.c.reason == PENDING)
        )
        try:
            with self._engine.begin() as conn:
                if rejection is None:
                    conn.execute(delete(_rejected_tests).where(row))
                else:
                    conn.execute(update(_rejected_tests).where(row).values(reason=str(rejection)))
        except SQLAlchemyError as exc:
            log.error(
                "lockout guard: cannot record the outcome of a test of account %s in %s (%s); it counts "
                "as rejected until %s",
                attempt.account_id,
                self.where,
                _cause(exc),
                self.counted_until(attempt).isoformat(timespec="minutes"),
                extra=TOLD,
            )
            return False
        return True

    def counted_until(self, attempt: PendingAttempt) -> datetime:
        return attempt.at + self._window

    def reset(self, lease: AccountLease) -> int:
        """Forget every counted attempt of the account; how many there were. Raises GuardUnavailable."""
        try:
            self._prepare()
            with self._engine.begin() as conn:
                removed = conn.execute(
                    delete(_rejected_tests).where(_rejected_tests.c.account_id == lease.account_id)
                )
        except (SQLAlchemyError, OSError) as exc:
            where, cause = self.where, _cause(exc)
            log.error(
                "lockout guard: cannot reset account %s in %s: %s", lease.account_id, where, cause, extra=TOLD
            )
            raise GuardUnavailable(self.where, _cause(exc)) from None
        return int(removed.rowcount)
