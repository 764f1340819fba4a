"""The scheduler: periodic jobs from the config, re-checks that survive a restart, jobs run on demand."""

from __future__ import annotations

import base64
import logging
import os
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from bot.config import ConfigError
from bot.monitor import scheduler as scheduler_module
from bot.monitor.models import AuditHeadNotice, MessageRef, RecheckReport
from bot.monitor.scheduler import (
    AUDIT_HEAD_JOB,
    EXPIRY_JOB,
    MONITOR_JOB,
    Scheduler,
    current_monitor,
    recheck_job,
    start_scheduler,
)
from lab.winrm.model import Host, log_line
from lab.winrm.server import WinRMEmulator
from tests.monitor_tools import (
    CREDENTIAL_ERROR,
    WINRM_PASSWORD,
    WINRM_USER,
    Clock,
    RecordingNotifier,
    make_runtime,
    monitor_settings,
)
from tests.storetools import check_event

THREAD = MessageRef(channel="C0CHANGES", ts="1764050000.000100")


@pytest.fixture
def sensors(monkeypatch: pytest.MonkeyPatch) -> Iterator[WinRMEmulator]:
    monkeypatch.setenv("ATP_BOT_TEST_WINRM", WINRM_PASSWORD)
    monkeypatch.delenv("ATP_BOT_STORE_KEY", raising=False)
    with WinRMEmulator(username=WINRM_USER, password=WINRM_PASSWORD) as emulator:
        emulator.add_host(Host.sensor("sensor01"))
        yield emulator


@pytest.fixture
def started() -> Iterator[list[Scheduler]]:
    """Schedulers a test starts; every one is shut down at teardown."""
    schedulers: list[Scheduler] = []
    yield schedulers
    for scheduler in schedulers:
        scheduler.shutdown()


def test_periodic_jobs_follow_the_configuration(
    sensors: WinRMEmulator, tmp_path: Path, started: list[Scheduler]
) -> None:
    extra = '[scheduler]\nmonitor_interval_minutes = 7\nexpiry_check_time = "06:30"\n'
    runtime = make_runtime(monitor_settings(tmp_path, sensors, extra=extra), RecordingNotifier(), Clock())
    scheduler = start_scheduler(runtime, paused=True)
    started.append(scheduler)
    assert current_monitor() is runtime
    monitor, expiry = scheduler.aps.get_job(MONITOR_JOB), scheduler.aps.get_job(EXPIRY_JOB)
    assert isinstance(monitor.trigger, IntervalTrigger)
    assert monitor.trigger.interval == timedelta(minutes=7)
    assert isinstance(expiry.trigger, CronTrigger)
    assert str(expiry.trigger.fields[5]) == "6" and str(expiry.trigger.fields[6]) == "30"
    assert (tmp_path / "state" / "scheduler.sqlite").stat().st_mode & 0o077 == 0

    scheduler.shutdown()
    assert current_monitor() is None
    interval = monitor_settings(tmp_path, sensors, extra='[scheduler]\nexpiry_check_time = "12h"\n')
    again = start_scheduler(make_runtime(interval, RecordingNotifier(), Clock()), paused=True)
    started.append(again)
    trigger = again.aps.get_job(EXPIRY_JOB).trigger
    assert isinstance(trigger, IntervalTrigger) and trigger.interval == timedelta(hours=12)


def test_a_disabled_scheduler_plans_nothing(
    sensors: WinRMEmulator, tmp_path: Path, started: list[Scheduler]
) -> None:
    started.append(
        start_scheduler(make_runtime(monitor_settings(tmp_path, sensors), RecordingNotifier(), Clock()))
    )
    started[0].shutdown()
    settings = monitor_settings(tmp_path, sensors, extra="[scheduler]\nenabled = false\n")
    scheduler = start_scheduler(make_runtime(settings, RecordingNotifier(), Clock()), paused=True)
    started.append(scheduler)
    assert scheduler.pending() == []
    assert scheduler.schedule_rechecks("svc", THREAD, Clock().now) == []


def test_rechecks_survive_a_restart_and_report_in_the_change_thread(
    sensors: WinRMEmulator, tmp_path: Path, started: list[Scheduler]
) -> None:
    settings = monitor_settings(tmp_path, sensors, extra="[scheduler]\nrecheck_delays_minutes = [2, 10]\n")
    first = start_scheduler(make_runtime(settings, RecordingNotifier(), Clock()), paused=True)
    started.append(first)
    changed_at = Clock().now
    ids = first.schedule_rechecks("svc", THREAD, changed_at)
    assert len(ids) == 2
    runs = [job.next_run for job in first.pending() if job.id in ids]
    assert sorted(run for run in runs if run is not None) == [
        changed_at + timedelta(minutes=2),
        changed_at + timedelta(minutes=10),
    ]
    first.shutdown()

    sensors.host("sensor01").append_log(log_line(changed_at + timedelta(minutes=1), CREDENTIAL_ERROR))
    notifier = RecordingNotifier()
    second = start_scheduler(make_runtime(settings, notifier, Clock()), paused=True)
    started.append(second)
    assert {job.id for job in second.pending()} >= set(ids)
    second.run_job_now(ids[0])
    ((thread, report),) = notifier.of("post_recheck")
    assert thread == THREAD
    assert isinstance(report, RecheckReport)
    assert (report.account_id, report.delay_minutes, report.changed_at) == ("svc", 2, changed_at)
    (sensor,) = report.sensors
    assert (sensor.name, sensor.credential_errors, sensor.healthy) == ("sensor01", 1, False)
    assert ids[0] not in {job.id for job in second.pending()}
    assert ids[1] in {job.id for job in second.pending()}
    (row,) = [r for r in second.monitor.changes.audit.recent() if r.action == "check"]
    assert (row.actor, row.outcome) == ("atp-bot:monitor", "failed")


def test_a_recheck_report_waits_out_a_notifier_outage(
    sensors: WinRMEmulator, tmp_path: Path, started: list[Scheduler]
) -> None:
    notifier = RecordingNotifier()
    scheduler = start_scheduler(
        make_runtime(monitor_settings(tmp_path, sensors), notifier, Clock()), paused=True
    )
    started.append(scheduler)
    ids = scheduler.schedule_rechecks("svc", THREAD, Clock().now)
    notifier.failing = True
    scheduler.run_job_now(ids[0])
    assert notifier.calls == []
    notifier.failing = False
    scheduler.run_job_now(MONITOR_JOB)  # the next monitor cycle delivers what waited
    assert notifier.names() == ["post_recheck"]


def test_recheck_now_runs_the_monitor_cycle_in_the_scheduler(
    sensors: WinRMEmulator, tmp_path: Path, started: list[Scheduler]
) -> None:
    notifier = RecordingNotifier()
    sensors.host("sensor01").append_log(log_line(Clock().now, CREDENTIAL_ERROR))
    scheduler = start_scheduler(make_runtime(monitor_settings(tmp_path, sensors), notifier, Clock()))
    started.append(scheduler)
    scheduler.recheck_now()
    deadline = time.monotonic() + 20
    while not notifier.calls and time.monotonic() < deadline:
        time.sleep(0.02)  # the cycle runs in the scheduler's own thread
    assert notifier.names() == ["post_incident"]


def test_a_job_without_a_monitor_logs_and_does_nothing(caplog: pytest.LogCaptureFixture) -> None:
    scheduler_module.register_monitor(None)
    with caplog.at_level(logging.ERROR):
        recheck_job("svc", THREAD.model_dump(), Clock().now.isoformat(), 2)
    assert "no monitor registered" in caplog.text


def test_an_unusable_job_store_is_a_configuration_error(sensors: WinRMEmulator, tmp_path: Path) -> None:
    extra = '[scheduler]\njobstore_url = "sqlite:////nonexistent-dir/jobs.sqlite"\n'
    runtime = make_runtime(monitor_settings(tmp_path, sensors, extra=extra), RecordingNotifier(), Clock())
    with pytest.raises(ConfigError, match=r"scheduler\.jobstore_url: cannot use sqlite:////nonexistent-dir"):
        start_scheduler(runtime)
    assert current_monitor() is None


def test_a_recheck_missed_while_the_bot_was_down_runs_at_start(
    sensors: WinRMEmulator, tmp_path: Path, started: list[Scheduler]
) -> None:
    settings = monitor_settings(tmp_path, sensors)
    first = start_scheduler(make_runtime(settings, RecordingNotifier(), Clock()), paused=True)
    started.append(first)
    changed_at = datetime.now(UTC) - timedelta(minutes=3)  # the +2 min re-check fell in the downtime
    first.schedule_rechecks("svc", THREAD, changed_at)
    first.shutdown()

    notifier = RecordingNotifier()
    second = start_scheduler(make_runtime(settings, notifier, Clock()))
    started.append(second)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (
        not notifier.calls or any(job.id.endswith(":2") for job in second.pending())
    ):
        time.sleep(0.02)  # until it ran and the scheduler removed it
    ((thread, report),) = notifier.of("post_recheck")
    assert (thread, report.delay_minutes) == (THREAD, 2)
    assert [job.id.rsplit(":", 1)[1] for job in second.pending() if job.id.startswith("recheck:")] == ["10"]


def test_rechecks_of_an_unknown_account_are_refused(
    sensors: WinRMEmulator, tmp_path: Path, started: list[Scheduler]
) -> None:
    scheduler = start_scheduler(
        make_runtime(monitor_settings(tmp_path, sensors), RecordingNotifier(), Clock()), paused=True
    )
    started.append(scheduler)
    with pytest.raises(ConfigError, match="no account with id 'nope'"):
        scheduler.schedule_rechecks("nope", THREAD, Clock().now)
    assert [job.id for job in scheduler.pending() if job.id.startswith("recheck:")] == []


def test_run_cycle_now_answers_in_the_calling_thread(
    sensors: WinRMEmulator, tmp_path: Path, started: list[Scheduler]
) -> None:
    notifier = RecordingNotifier()
    scheduler = start_scheduler(
        make_runtime(monitor_settings(tmp_path, sensors), notifier, Clock()), paused=True
    )
    started.append(scheduler)
    sensors.host("sensor01").set_service("AATPSensorUpdater", "Stopped")
    result = scheduler.run_cycle_now()
    assert result.opened == ("svc",) and [r.name for r in result.results] == ["sensor01"]
    assert notifier.names() == ["post_incident"]


def test_the_daily_audit_head_announcement(
    sensors: WinRMEmulator, tmp_path: Path, started: list[Scheduler], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ATP_BOT_AUDIT_KEY", base64.urlsafe_b64encode(os.urandom(32)).decode())
    off = start_scheduler(make_runtime(monitor_settings(tmp_path, sensors), RecordingNotifier(), Clock()))
    started.append(off)
    assert off.aps.get_job(AUDIT_HEAD_JOB) is None  # off by default
    off.shutdown()

    notifier = RecordingNotifier()
    extra = '[audit]\nannounce_head = true\nannounce_head_at = "07:15"\n'
    scheduler = start_scheduler(
        make_runtime(monitor_settings(tmp_path, sensors, extra=extra), notifier, Clock()), paused=True
    )
    started.append(scheduler)
    trigger = scheduler.aps.get_job(AUDIT_HEAD_JOB).trigger
    assert isinstance(trigger, CronTrigger)
    assert str(trigger.fields[5]) == "7" and str(trigger.fields[6]) == "15"
    trail = scheduler.monitor.changes.audit
    trail.record(check_event("cli:alice", account="svc"))

    scheduler.run_job_now(AUDIT_HEAD_JOB)
    (notice,) = notifier.of("post_audit_head")
    assert isinstance(notice, AuditHeadNotice)
    assert (notice.intact, notice.keyed, notice.verified_at) == (True, True, Clock().now)
    assert notice.head == trail.verify().anchor

    with sqlite3.connect(tmp_path / "state" / "audit.sqlite") as db:
        db.execute("UPDATE audit_events SET outcome = 'failed' WHERE id = 1")
    notifier.failing = True  # Slack is down at announcement time: the notice waits in the outbox
    scheduler.run_job_now(AUDIT_HEAD_JOB)
    notifier.failing = False
    scheduler.run_job_now(MONITOR_JOB)
    (_, broken) = notifier.of("post_audit_head")
    assert (broken.intact, broken.head) == (False, None)
    assert broken.problem.startswith("row 1: its keyed hash does not match")
