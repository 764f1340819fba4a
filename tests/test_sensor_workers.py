"""Sensor checks in worker processes (bot.sensors.workers), through the real pywinrm client against the
WinRM emulator, and inside a real `atp-bot run`."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.sensors import CheckWorkers, SensorResult, check_sensors
from bot.sensors.winrm_runner import FailureKind
from bot.sensors.workers import LogSetup
from lab.load import WINRM_PASSWORD_ENV, WINRM_USER, BotProcess, load_config, sensor_fleet
from lab.slack import SlackEmulator
from lab.winrm.model import Host, log_line
from lab.winrm.server import WinRMEmulator
from tests.winrm_lab import CANARY, make_settings

CRED = "The supplied credential is invalid."


@pytest.fixture
def workers() -> Iterator[CheckWorkers]:
    with CheckWorkers(processes=2, threads=3, log_setup=LogSetup(logging.DEBUG, "text")) as running:
        yield running


def comparable(result: SensorResult) -> SensorResult:
    """A result without what differs from one run to the next (when, how long)."""
    return replace(result, checked_at=datetime(2000, 1, 1, tzinfo=UTC), duration=0.0)


def test_workers_report_what_the_threads_report(emulator: WinRMEmulator, workers: CheckWorkers) -> None:
    hosts = [Host.sensor(f"sensor{i}") for i in range(6)]
    hosts[1].services["AATPSensor"] = "Stopped"
    hosts[2].append_log(log_line(datetime.now(UTC), CRED))
    hosts[3].fault = "http401"
    hosts[4].fault = "refused"
    hosts[5].fault = "bad_output"
    settings = make_settings([{"name": h.name, "endpoint": emulator.add_host(h)} for h in hosts])
    seen: list[str] = []

    in_workers = workers.check_sensors(settings, on_result=lambda r: seen.append(r.name))
    in_threads = check_sensors(settings)

    assert [comparable(r) for r in in_workers] == [comparable(r) for r in in_threads]
    assert sorted(seen) == sorted(h.name for h in hosts)
    assert in_workers[2].credential_errors is not None and in_workers[2].credential_errors.count == 1
    assert in_workers[2].position is not None  # the next scan goes on from here
    assert {r.failure.kind for r in in_workers if r.failure} == {
        FailureKind.ACCESS_DENIED,
        FailureKind.UNREACHABLE,
        FailureKind.SCRIPT_ERROR,
    }


def test_a_worker_that_dies_fails_its_checks_and_is_replaced(emulator: WinRMEmulator) -> None:
    hanging, healthy = Host.sensor("hangs"), Host.sensor("healthy")
    hanging.fault = "hang"
    settings = make_settings(
        [{"name": h.name, "endpoint": emulator.add_host(h)} for h in (hanging, healthy)],
        checks={"host_timeout": 120},
    )
    with CheckWorkers(processes=1, threads=2, log_setup=LogSetup(logging.INFO, "text")) as workers:
        (first,) = workers.pids
        results: list[SensorResult] = []
        checking = threading.Thread(target=lambda: results.extend(workers.check_sensors(settings, ["hangs"])))
        checking.start()
        deadline = time.monotonic() + 30
        while hanging.counters.requests == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(first, signal.SIGKILL)
        checking.join(timeout=30)

        assert not checking.is_alive()
        (lost,) = results
        assert lost.failure is not None and "worker process stopped unexpectedly" in lost.failure.detail
        (again,) = workers.check_sensors(settings, ["healthy"])
        assert again.healthy
        assert workers.pids != [first]
    assert all(not Path(f"/proc/{pid}").exists() for pid in workers.pids)


def test_closing_stops_every_worker(workers: CheckWorkers) -> None:
    pids = workers.pids
    assert len(pids) == 2 and all(Path(f"/proc/{pid}").exists() for pid in pids)
    workers.close()
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids)


@contextmanager
def stderr_to(path: Path) -> Iterator[None]:
    """File descriptor 2 (what a worker process inherits as its stderr) written to `path` meanwhile."""
    saved = os.dup(2)
    with path.open("wb") as file:
        os.dup2(file.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def test_a_worker_never_logs_the_password(emulator: WinRMEmulator, tmp_path: Path) -> None:
    refused = Host.sensor("denied")
    refused.fault = "http401"
    settings = make_settings(
        [{"name": h.name, "endpoint": emulator.add_host(h)} for h in (Host.sensor("fine"), refused)]
    )
    stderr = tmp_path / "stderr"
    with stderr_to(stderr), CheckWorkers(1, 2, LogSetup(logging.DEBUG, "text")) as workers:
        workers.check_sensors(settings)
    logged = stderr.read_text(encoding="utf-8")
    assert "sensor fine: checked in" in logged  # the worker logged to the bot's stderr, at DEBUG
    assert "NTLM step output" in logged  # the client libraries' debug lines too
    assert CANARY not in logged


def test_run_checks_in_workers_that_hold_no_secret(tmp_path: Path) -> None:
    password = "W0rker-canary-Pa55"
    with WinRMEmulator(username=WINRM_USER, password=password) as sensors, SlackEmulator() as slack:
        config = load_config(tmp_path / "state", slack, sensor_fleet(sensors, 3))
        with BotProcess(tmp_path, config, slack, {WINRM_PASSWORD_ENV: password}) as bot:
            delivery = slack.slash_command("status")
            assert delivery.ack is not None
            deadline = time.monotonic() + 60
            while sum(h.counters.scripts for h in sensors.hosts.values()) < 3 and time.monotonic() < deadline:
                time.sleep(0.1)
            checkers = bot.check_workers()
            assert len(checkers) == 1  # `[sensor_checks] worker_processes` defaults to one
            secrets = [password, slack.bot_token, slack.app_token, slack.signing_secret]
            for pid in checkers:
                exposed = (
                    Path(f"/proc/{pid}/environ").read_bytes() + Path(f"/proc/{pid}/cmdline").read_bytes()
                )
                assert not [s for s in secrets if s.encode() in exposed]
        assert sum(h.counters.scripts for h in sensors.hosts.values()) == 3
    assert not any(Path(f"/proc/{pid}").exists() for pid in checkers)


def gone(pid: int) -> bool:
    """The process has ended (a zombie whose parent is gone counts: it runs nothing)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text(encoding="ascii").rpartition(")")[2].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_workers_end_when_the_bot_is_killed(tmp_path: Path) -> None:
    with WinRMEmulator(username=WINRM_USER, password="x") as sensors, SlackEmulator() as slack:
        config = load_config(tmp_path / "state", slack, sensor_fleet(sensors, 1))
        with BotProcess(tmp_path, config, slack, {WINRM_PASSWORD_ENV: "x"}) as bot:
            workers = bot.check_workers()
            assert workers
            os.kill(bot.pid, signal.SIGKILL)
            deadline = time.monotonic() + 20
            while not all(gone(p) for p in workers) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert all(gone(p) for p in workers)


def test_checks_queued_behind_others_are_not_late(
    emulator: WinRMEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("bot.sensors.workers.GRACE_SECONDS", 0.0)
    hosts = [Host.sensor(f"queued{i:02d}") for i in range(16)]
    for host in hosts:
        host.latency = 0.05  # about 0.3 s a check: 16 in a row take longer than one check's deadline
    settings = make_settings(
        [{"name": h.name, "endpoint": emulator.add_host(h)} for h in hosts], checks={"host_timeout": 3}
    )
    with CheckWorkers(processes=1, threads=1, log_setup=LogSetup(logging.INFO, "text")) as workers:
        results = workers.check_sensors(settings)
    assert [r.failure for r in results if not r.healthy] == []
