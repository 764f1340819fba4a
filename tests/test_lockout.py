"""The lockout guard's window and the per-account lock (threads and processes)."""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.config import LockoutGuardConfig
from bot.lockout import AccountBusy, LockoutGuard, hold_account


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def test_guard_refuses_past_the_limit_and_recovers_after_the_window(tmp_path: Path) -> None:
    clock = Clock()
    guard = LockoutGuard.at_path(
        tmp_path / "g.sqlite", LockoutGuardConfig(max_rejections=2, window_minutes=30), clock
    )
    with hold_account(tmp_path, "a") as lease:
        assert guard.check(lease).allowed
        guard.record_rejection(lease, "wrong_password")
        clock.now += timedelta(minutes=10)
        guard.record_rejection(lease, "wrong_password")
        decision = guard.check(lease)
        assert not decision.allowed
        assert decision.retry_after == datetime(2026, 1, 1, 12, 30, tzinfo=UTC)
        assert "until 2026-01-01 12:30 UTC" in decision.message
        clock.now = datetime(2026, 1, 1, 12, 30, 1, tzinfo=UTC)
        assert guard.check(lease).allowed
    with hold_account(tmp_path, "b") as other:
        assert guard.check(other).allowed


def test_guard_state_survives_a_restart(tmp_path: Path) -> None:
    config = LockoutGuardConfig(max_rejections=1)
    with hold_account(tmp_path, "a") as lease:
        LockoutGuard.at_path(tmp_path / "g.sqlite", config).record_rejection(lease, "wrong_password")
        assert not LockoutGuard.at_path(tmp_path / "g.sqlite", config).check(lease).allowed


def test_second_holder_in_another_thread_is_told_at_once(tmp_path: Path) -> None:
    errors: list[BaseException] = []
    with hold_account(tmp_path, "a"):

        def contend() -> None:
            try:
                with hold_account(tmp_path, "a"):
                    pass
            except AccountBusy as exc:
                errors.append(exc)

        thread = threading.Thread(target=contend)
        thread.start()
        thread.join(timeout=5)
        with hold_account(tmp_path, "other-account"):
            pass
    assert len(errors) == 1 and "in progress" in str(errors[0])
    with hold_account(tmp_path, "a"):
        pass


def test_lock_holds_across_processes(tmp_path: Path) -> None:
    script = (
        "import sys, pathlib\n"
        "from bot.lockout import hold_account\n"
        "with hold_account(pathlib.Path(sys.argv[1]), 'a'):\n"
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
        with pytest.raises(AccountBusy), hold_account(tmp_path, "a"):
            pass
    finally:
        holder.communicate("", timeout=10)
    with hold_account(tmp_path, "a"):
        pass
