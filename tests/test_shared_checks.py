"""Concurrent requests for the same sensors share one check (real pywinrm against the WinRM emulator)."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest

from bot.sensors import SensorResult, SharedChecks
from lab.winrm.model import Host
from lab.winrm.server import WinRMEmulator
from tests.slack_lab import wait_for
from tests.winrm_lab import PASSWORD_ENV, make_settings


class Requester:
    """What one person asking for the status would be shown."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.final: list[str] | None = None
        self.problem: str | None = None

    def add(self, result: SensorResult) -> None:
        self.seen.append(result.name)

    def finish(self, results: Sequence[SensorResult]) -> None:
        self.final = [r.name for r in results]

    def fail(self, problem: str) -> None:
        self.problem = problem


class Refusing(Requester):
    """A requester whose Slack refuses every update."""

    def add(self, result: SensorResult) -> None:
        raise RuntimeError("Slack said no")

    finish = fail = add  # type: ignore[assignment]


def fleet(emulator: WinRMEmulator, slow_seconds: float) -> SharedChecks:
    """A fast sensor and a slow one: a check is in flight, with one result known, while `slow` answers."""
    slow = Host.sensor("slow")
    slow.latency = slow_seconds
    sensors = [
        {"name": "fast", "endpoint": emulator.add_host(Host.sensor("fast"))},
        {"name": "slow", "endpoint": emulator.add_host(slow)},
    ]
    return SharedChecks(make_settings(sensors, checks={"pool_size": 2}))


def start(checks: SharedChecks, requester: Requester) -> threading.Thread:
    thread = threading.Thread(target=checks.check, args=(["fast", "slow"], requester))
    thread.start()
    return thread


def test_a_request_during_a_check_joins_it(emulator: WinRMEmulator) -> None:
    checks = fleet(emulator, slow_seconds=0.1)
    first, second = Requester(), Requester()
    owner = start(checks, first)
    wait_for(lambda: first.seen == ["fast"], timeout=10)
    joined = checks.check(["fast", "slow"], second)
    assert joined
    assert second.seen == ["fast"]  # replayed at once
    owner.join(timeout=30)
    assert first.final == second.final == ["fast", "slow"]
    assert second.seen == ["fast", "slow"]
    assert [emulator.host(n).counters.scripts for n in ("fast", "slow")] == [1, 1]


def test_a_request_after_a_check_ended_starts_a_new_one(emulator: WinRMEmulator) -> None:
    checks = fleet(emulator, slow_seconds=0)
    for _ in range(2):
        requester = Requester()
        assert not checks.check(["fast", "slow"], requester)
        assert requester.final == ["fast", "slow"]
    assert emulator.host("slow").counters.scripts == 2


def test_a_failing_follower_does_not_stop_the_others(emulator: WinRMEmulator) -> None:
    checks = fleet(emulator, slow_seconds=0.1)
    owner_requester, healthy = Requester(), Requester()

    owner = start(checks, owner_requester)
    wait_for(lambda: owner_requester.seen, timeout=10)
    checks.check(["fast", "slow"], Refusing())
    checks.check(["fast", "slow"], healthy)
    owner.join(timeout=30)
    assert owner_requester.final == healthy.final == ["fast", "slow"]


def test_different_sensors_are_not_shared(emulator: WinRMEmulator) -> None:
    checks = fleet(emulator, slow_seconds=0.1)
    both, fast_only = Requester(), Requester()
    owner = start(checks, both)
    wait_for(lambda: both.seen, timeout=10)
    assert not checks.check(["fast"], fast_only)
    owner.join(timeout=30)
    assert fast_only.final == ["fast"]
    assert emulator.host("fast").counters.scripts == 2


def test_a_check_that_cannot_run_is_told_to_everyone(
    emulator: WinRMEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    checks = fleet(emulator, slow_seconds=0)
    monkeypatch.delenv(PASSWORD_ENV)
    requester = Requester()
    checks.check(["fast", "slow"], requester)
    assert requester.final is None
    assert requester.problem is not None and PASSWORD_ENV in requester.problem
    assert emulator.host("fast").counters.requests == 0
