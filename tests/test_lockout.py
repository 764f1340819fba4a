"""The lockout guard's window and the per-account lock (threads and processes)."""

from __future__ import annotations

import sqlite3
import stat
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from bot.config import LockoutGuardConfig
from bot.directory import AccountBusy, AccountLease, AccountLocks, LockoutGuard, Reason
from bot.infra.state_dir import state_dir
from lab.faults import read_only_sqlite
from tests.storetools import make_settings


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def reject(guard: LockoutGuard, lease: AccountLease) -> None:
    """One admitted test that AD rejected."""
    attempt = guard.admit(lease).attempt
    assert attempt is not None
    assert guard.settle(attempt, Reason.WRONG_PASSWORD)


def test_guard_refuses_past_the_limit_and_recovers_after_the_window(tmp_path: Path) -> None:
    clock = Clock()
    guard = LockoutGuard.at_path(
        tmp_path / "g.sqlite", LockoutGuardConfig(max_rejections=2, window_minutes=30), clock
    )
    with AccountLocks(tmp_path).hold("a") as lease:
        reject(guard, lease)
        clock.now += timedelta(minutes=10)
        reject(guard, lease)
        decision = guard.admit(lease)
        assert (decision.allowed, decision.reason, decision.attempt) == (False, Reason.GUARD_LIMIT, None)
        assert decision.retry_after == datetime(2026, 1, 1, 12, 30, tzinfo=UTC)
        assert "until 2026-01-01 12:30 UTC" in decision.message
        clock.now = datetime(2026, 1, 1, 12, 30, 1, tzinfo=UTC)
        assert guard.admit(lease).allowed
    with AccountLocks(tmp_path).hold("b") as other:
        assert guard.admit(other).allowed


def test_guard_state_survives_a_restart(tmp_path: Path) -> None:
    config = LockoutGuardConfig(max_rejections=1)
    with AccountLocks(tmp_path).hold("a") as lease:
        reject(LockoutGuard.at_path(tmp_path / "g.sqlite", config), lease)
        assert not LockoutGuard.at_path(tmp_path / "g.sqlite", config).admit(lease).allowed


def test_an_accepted_test_or_one_never_sent_is_not_counted(tmp_path: Path) -> None:
    guard = LockoutGuard.at_path(tmp_path / "g.sqlite", LockoutGuardConfig(max_rejections=1))
    with AccountLocks(tmp_path).hold("a") as lease:
        for _ in range(3):
            attempt = guard.admit(lease).attempt
            assert attempt is not None and guard.settle(attempt, None)
        assert guard.count("a").rejections == 0


def test_a_test_never_settled_counts_as_a_rejection(tmp_path: Path) -> None:
    """The process died mid-bind: AD may have counted the password, so the guard does too."""
    config = LockoutGuardConfig(max_rejections=1)
    with AccountLocks(tmp_path).hold("a") as lease:
        assert LockoutGuard.at_path(tmp_path / "g.sqlite", config).admit(lease).allowed
        after_restart = LockoutGuard.at_path(tmp_path / "g.sqlite", config)
        count = after_restart.count("a")
        assert (count.rejections, count.pending, count.refusing) == (1, 1, True)
        assert after_restart.admit(lease).reason is Reason.GUARD_LIMIT


def test_a_ledger_that_cannot_be_written_refuses_the_test(tmp_path: Path) -> None:
    """Readable but not writable (read-only disk or file): the test is refused, not let through."""
    path = tmp_path / "g.sqlite"
    guard = LockoutGuard.at_path(path, LockoutGuardConfig(max_rejections=2))
    with AccountLocks(tmp_path).hold("a") as lease:
        reject(guard, lease)
        read_only_sqlite(path)
        decision = guard.admit(lease)
    assert (decision.allowed, decision.reason, decision.attempt) == (False, Reason.GUARD_UNAVAILABLE, None)
    assert decision.message.startswith("atp-bot cannot record the attempt: the state directory cannot be")
    assert "(attempt to write a readonly database)" in decision.message
    assert "nothing was sent to AD" in decision.message
    assert guard.count("a").rejections == 1


def test_a_write_lock_held_past_the_busy_timeout_refuses_the_test(tmp_path: Path) -> None:
    """Another process holds the ledger's write lock: the count can be read, the attempt not written."""
    path = tmp_path / "g.sqlite"
    LockoutGuard.at_path(path, LockoutGuardConfig()).count("a")  # the ledger exists
    impatient = create_engine(f"sqlite:///{path}", connect_args={"timeout": 0.1}, poolclass=NullPool)
    guard = LockoutGuard(impatient, LockoutGuardConfig(), path=path)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with AccountLocks(tmp_path).hold("a") as lease:
            decision = guard.admit(lease)
    finally:
        holder.rollback()
        holder.close()
    assert (decision.allowed, decision.reason) == (False, Reason.GUARD_UNAVAILABLE)
    assert "cannot be written (database is locked)" in decision.message


def test_a_verdict_that_cannot_be_recorded_leaves_the_test_counted(tmp_path: Path) -> None:
    path = tmp_path / "g.sqlite"
    guard = LockoutGuard.at_path(path, LockoutGuardConfig(max_rejections=1))
    with AccountLocks(tmp_path).hold("a") as lease:
        attempt = guard.admit(lease).attempt
        assert attempt is not None
        read_only_sqlite(path)
        assert not guard.settle(attempt, None)
    assert guard.count("a").pending == 1


def test_reset_forgets_the_account_only(tmp_path: Path) -> None:
    guard = LockoutGuard.at_path(tmp_path / "g.sqlite", LockoutGuardConfig(max_rejections=1))
    with AccountLocks(tmp_path).hold("a") as a, AccountLocks(tmp_path).hold("b") as b:
        reject(guard, a)
        assert guard.admit(a).reason is Reason.GUARD_LIMIT
        assert guard.admit(b).allowed  # left pending
        assert guard.reset(a) == 1
        assert guard.count("a").rejections == 0 and guard.count("b").pending == 1


def test_the_ledger_file_is_private(tmp_path: Path) -> None:
    """Owner-only like every other state file; a file an older version left 0644 is tightened."""
    config = LockoutGuardConfig()
    fresh, old = tmp_path / "fresh.sqlite", tmp_path / "old.sqlite"
    old.touch(mode=0o644)
    old.chmod(0o644)
    for path in (fresh, old):
        guard = LockoutGuard.at_path(path, config)
        with AccountLocks(tmp_path).hold("a") as lease:
            reject(guard, lease)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_second_holder_in_another_thread_is_told_at_once(tmp_path: Path) -> None:
    errors: list[BaseException] = []
    with AccountLocks(tmp_path).hold("a"):

        def contend() -> None:
            try:
                with AccountLocks(tmp_path).hold("a"):
                    pass
            except AccountBusy as exc:
                errors.append(exc)

        thread = threading.Thread(target=contend)
        thread.start()
        thread.join(timeout=5)
        with AccountLocks(tmp_path).hold("other-account"):
            pass
    assert len(errors) == 1 and "in progress" in str(errors[0])
    with AccountLocks(tmp_path).hold("a"):
        pass


def test_lock_holds_across_processes(tmp_path: Path) -> None:
    script = (
        "import sys, pathlib\n"
        "from bot.directory.lockout import AccountLocks\n"
        "with AccountLocks(pathlib.Path(sys.argv[1])).hold('a'):\n"
        "    print('held', flush=True); sys.stdin.read()\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(AccountBusy), AccountLocks(tmp_path).hold("a"):
            pass
    finally:
        holder.communicate("", timeout=10)
    with AccountLocks(tmp_path).hold("a"):
        pass


def test_without_replicas_the_account_locks_are_the_state_directory_s(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    locks = AccountLocks.for_settings(settings)
    with locks.hold("a") as lease:
        assert lease.account_id == "a"
        with pytest.raises(AccountBusy), AccountLocks(state_dir(settings)).hold("a"):  # e.g. a CLI run
            pass
        other_host = tmp_path / "other-host"
        other_host.mkdir()
        with AccountLocks.for_settings(settings, other_host).hold("a"):  # no replicas: nothing shared
            pass
    locks.close()  # nothing to close without replicas
    with locks.hold("a"):
        pass
