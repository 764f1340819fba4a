"""The credential-error monitor against the WinRM emulator: incidents, reachability, retries, start."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from bot.infra.metrics import REGISTRY, count_open_alerts
from bot.monitor.actions import start_sensor_service
from bot.monitor.cycle import run_monitor_cycle
from bot.monitor.models import Incident, MessageRef, ReachabilityNotice
from bot.monitor.notify import LogNotifier
from bot.monitor.render import render_incident
from lab.winrm.model import Host
from lab.winrm.server import WinRMEmulator
from tests.monitor_tools import (
    CREDENTIAL_ERROR,
    WINRM_PASSWORD,
    WINRM_USER,
    Clock,
    RecordingNotifier,
    alert_rows,
    credential_errors,
    make_runtime,
    monitor_settings,
)


@pytest.fixture
def sensors(monkeypatch: pytest.MonkeyPatch) -> Iterator[WinRMEmulator]:
    monkeypatch.setenv("ATP_BOT_TEST_WINRM", WINRM_PASSWORD)
    monkeypatch.delenv("ATP_BOT_STORE_KEY", raising=False)
    with WinRMEmulator(username=WINRM_USER, password=WINRM_PASSWORD) as emulator:
        emulator.add_host(Host.sensor("sensor01"))
        emulator.add_host(Host.sensor("sensor02"))
        yield emulator


def test_an_incident_is_posted_once_updated_then_closed_with_recovery(
    sensors: WinRMEmulator, tmp_path: Path
) -> None:
    clock, notifier = Clock(), RecordingNotifier()
    runtime = make_runtime(monitor_settings(tmp_path, sensors), notifier, clock)
    assert run_monitor_cycle(runtime).opened == ()  # healthy sensors: nothing to say
    assert notifier.calls == []

    credential_errors(sensors, "sensor01", clock, 3)
    first = run_monitor_cycle(runtime)
    assert first.opened == ("svc",)
    (incident,) = notifier.of("post_incident")
    assert isinstance(incident, Incident)
    assert [(s.sensor, s.credential_errors) for s in incident.sensors] == [("sensor01", 3)]
    assert incident.sample is not None and CREDENTIAL_ERROR in incident.sample
    assert incident.first_seen.replace(microsecond=0) == clock.now.replace(microsecond=0)
    assert [a.kind for a in incident.actions] == ["update_password", "recheck"]

    clock.advance(minutes=5)
    credential_errors(sensors, "sensor01", clock, 2)
    credential_errors(sensors, "sensor02", clock, 1)
    assert run_monitor_cycle(runtime).updated == ("svc",)
    assert notifier.names() == ["post_incident", "update_incident"]
    ref, updated = notifier.of("update_incident")[0]
    assert ref == MessageRef(channel="C0ALERTS", ts="1764050000.000001")
    assert updated.id == incident.id
    assert [(s.sensor, s.credential_errors) for s in updated.sensors] == [("sensor01", 5), ("sensor02", 1)]

    clock.advance(minutes=5)
    assert run_monitor_cycle(runtime).closed == ("svc",)
    ref, closed = notifier.of("close_incident")[0]
    assert ref.ts == "1764050000.000001" and closed.closed_at == clock.now
    assert "RESOLVED" in render_incident(closed)
    assert (  # the recovery tells the whole story: how many errors where, when, clean since when
        "5 credential error(s) on sensor01 from 2026-11-25 06:00 UTC to 2026-11-25 06:05 UTC, "
        "1 credential error(s) on sensor02 at 2026-11-25 06:05 UTC; clean since 2026-11-25 06:10 UTC"
    ) in render_incident(closed)
    assert runtime.memory.incidents() == {}
    clock.advance(minutes=5)
    run_monitor_cycle(runtime)
    assert notifier.names() == ["post_incident", "update_incident", "close_incident"]
    assert alert_rows(runtime) == [("failed", "credential_incident", "svc"), ("ok", "recovered", "svc")]


def test_log_positions_survive_a_restart_so_errors_are_counted_once(
    sensors: WinRMEmulator, tmp_path: Path
) -> None:
    clock, notifier = Clock(), RecordingNotifier()
    settings = monitor_settings(tmp_path, sensors)
    credential_errors(sensors, "sensor02", clock, 2)
    assert run_monitor_cycle(make_runtime(settings, notifier, clock)).opened == ("svc",)
    sensors.host("sensor02").rotate_log()
    credential_errors(sensors, "sensor02", clock, 1)

    restarted = make_runtime(settings, notifier, clock)  # a new process: state from the state dir only
    assert set(restarted.memory.positions()) == {"sensor01", "sensor02"}
    assert run_monitor_cycle(restarted).updated == ("svc",)
    _, incident = notifier.of("update_incident")[0]
    assert [(s.sensor, s.credential_errors) for s in incident.sensors] == [("sensor02", 3)]


def test_a_stopped_service_opens_an_incident_and_start_service_fixes_it(
    sensors: WinRMEmulator, tmp_path: Path
) -> None:
    clock, notifier = Clock(), RecordingNotifier()
    runtime = make_runtime(monitor_settings(tmp_path, sensors), notifier, clock)
    sensors.host("sensor02").set_service("AATPSensor", "Stopped")
    run_monitor_cycle(runtime)
    (incident,) = notifier.of("post_incident")
    assert [
        (s.sensor, s.credential_errors, [v.name for v in s.stopped_services]) for s in incident.sensors
    ] == [("sensor02", 0, ["AATPSensor"])]
    clock.advance(minutes=5)
    assert run_monitor_cycle(runtime).updated == ()  # still stopped, nothing new: the alert stays as it is
    assert notifier.names() == ["post_incident"]
    start = incident.actions[-1]
    assert (start.kind, start.sensor, start.service) == ("start_service", "sensor02", "AATPSensor")

    report = start_sensor_service(
        runtime.settings, runtime.changes.audit, "sensor02", "AATPSensor", "slack:U1 (alice)"
    )
    assert report.ok, report.message
    assert (report.before, report.after) == ("Stopped", "Running")
    assert sensors.host("sensor02").service_state("AATPSensor") == "Running"
    clock.advance(minutes=5)
    assert run_monitor_cycle(runtime).closed == ("svc",)
    (row,) = [r for r in runtime.changes.audit.recent() if r.action == "start-service"]
    assert (row.actor, row.account, row.outcome) == ("slack:U1 (alice)", "svc", "ok")


def test_start_service_refuses_a_service_the_sensor_does_not_run(
    sensors: WinRMEmulator, tmp_path: Path
) -> None:
    runtime = make_runtime(monitor_settings(tmp_path, sensors), RecordingNotifier(), Clock())
    report = start_sensor_service(runtime.settings, runtime.changes.audit, "sensor01", "Spooler", "slack:U1")
    assert not report.ok
    assert "not one of its services" in report.message
    (row,) = runtime.changes.audit.recent()
    assert (row.action, row.outcome, row.reason) == ("start-service", "refused", "bad_request")
    assert sensors.host("sensor01").counters.scripts == 0


def test_an_unreachable_sensor_is_reported_once_after_n_cycles_and_once_when_back(
    sensors: WinRMEmulator, tmp_path: Path
) -> None:
    clock, notifier = Clock(), RecordingNotifier()
    settings = monitor_settings(tmp_path, sensors, extra="[scheduler]\nunreachable_after = 3\n")
    runtime = make_runtime(settings, notifier, clock)
    sensors.set_fault("sensor01", "refused")
    for _ in range(2):
        run_monitor_cycle(runtime)
        clock.advance(minutes=5)
    assert notifier.calls == []
    for _ in range(3):
        run_monitor_cycle(runtime)
        clock.advance(minutes=5)
    (notice,) = notifier.of("post_unreachable")
    assert isinstance(notice, ReachabilityNotice)
    assert (notice.sensor, notice.failures, notice.reachable) == ("sensor01", 3, False)
    assert notice.since == Clock().now
    assert notice.detail

    sensors.set_fault("sensor01", None)
    run_monitor_cycle(runtime)
    run_monitor_cycle(runtime)
    assert notifier.names() == ["post_unreachable", "post_reachable"]
    assert notifier.of("post_reachable")[0].reachable
    assert [r[:2] for r in alert_rows(runtime)] == [
        ("failed", "sensor_unreachable"),
        ("ok", "sensor_reachable"),
    ]


def test_an_unreachable_sensor_keeps_an_incident_open(sensors: WinRMEmulator, tmp_path: Path) -> None:
    clock, notifier = Clock(), RecordingNotifier()
    runtime = make_runtime(monitor_settings(tmp_path, sensors), notifier, clock)
    credential_errors(sensors, "sensor01", clock, 1)
    run_monitor_cycle(runtime)
    sensors.set_fault("sensor02", "http500")
    assert run_monitor_cycle(runtime).closed == ()  # not a full clean cycle
    sensors.set_fault("sensor02", None)
    assert run_monitor_cycle(runtime).closed == ("svc",)


def test_a_notifier_outage_delays_alerts_without_losing_them(sensors: WinRMEmulator, tmp_path: Path) -> None:
    clock, notifier = Clock(), RecordingNotifier()
    runtime = make_runtime(
        monitor_settings(tmp_path, sensors, extra="[scheduler]\nunreachable_after = 1\n"), notifier, clock
    )
    notifier.failing = True
    credential_errors(sensors, "sensor01", clock, 2)
    sensors.set_fault("sensor02", "refused")
    result = run_monitor_cycle(runtime)
    assert result.opened == ("svc",) and not result.delivered
    assert notifier.calls == []
    assert alert_rows(runtime)[0][:2] == ("failed", "credential_incident")  # audited at once

    notifier.failing = False
    clock.advance(minutes=5)
    assert run_monitor_cycle(runtime).delivered
    assert notifier.names() == ["post_incident", "post_unreachable"]
    (incident,) = notifier.of("post_incident")
    assert incident.sensors[0].credential_errors == 2
    clock.advance(minutes=5)
    run_monitor_cycle(runtime)
    assert notifier.names() == ["post_incident", "post_unreachable"]  # nothing sent twice


def test_an_incident_opened_and_cleared_during_an_outage_is_still_reported(
    sensors: WinRMEmulator, tmp_path: Path
) -> None:
    clock, notifier = Clock(), RecordingNotifier()
    runtime = make_runtime(monitor_settings(tmp_path, sensors), notifier, clock)
    notifier.failing = True
    credential_errors(sensors, "sensor01", clock, 1)
    run_monitor_cycle(runtime)
    clock.advance(minutes=5)
    run_monitor_cycle(runtime)  # clean: closed, still undelivered
    notifier.failing = False
    clock.advance(minutes=5)
    run_monitor_cycle(runtime)
    # One message, already over: no recovery reply to an alert that was never posted.
    ((name, incident),) = notifier.calls
    assert name == "post_incident" and incident.closed
    assert incident.sensors[0].credential_errors == 1
    assert runtime.memory.incidents() == {}
    assert "1 credential error(s) on sensor01 at 2026-11-25 06:00 UTC; clean since 2026-11-25 06:05 UTC" in (
        render_incident(incident)
    )


def test_the_winrm_password_never_reaches_logs_or_state(
    sensors: WinRMEmulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    clock, notifier = Clock(), RecordingNotifier()
    runtime = make_runtime(monitor_settings(tmp_path, sensors), notifier, clock)
    credential_errors(sensors, "sensor01", clock, 1)
    sensors.set_fault("sensor02", "http401")
    run_monitor_cycle(runtime)
    for record in caplog.records:
        assert WINRM_PASSWORD not in record.getMessage()
    assert WINRM_PASSWORD not in repr(notifier.calls)
    for path in (tmp_path / "state").rglob("*"):
        if path.is_file():
            assert WINRM_PASSWORD.encode() not in path.read_bytes(), path


def test_the_log_notifier_renders_plain_text(
    sensors: WinRMEmulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="bot.monitor.notify")
    clock = Clock()
    settings = monitor_settings(tmp_path, sensors)
    runtime = make_runtime(settings, RecordingNotifier(), clock)
    runtime.notifier = LogNotifier()
    credential_errors(sensors, "sensor01", clock, 2)
    sensors.host("sensor02").set_service("AATPSensorUpdater", "Stopped")
    run_monitor_cycle(runtime)
    text = caplog.text
    assert "ALERT: account svc: sensors report credential problems" in text
    assert "sensor01: 2 credential error(s) since" in text
    assert "sensor02: service AATPSensorUpdater is Stopped" in text
    assert f"sample: 2026-11-25 06:00:00.0000 Error [DirectoryServices] {CREDENTIAL_ERROR}" in text
    assert "fix: atp-bot set-password --account svc" in text


def test_sensors_that_cannot_be_checked_are_reported_like_unreachable_ones(
    sensors: WinRMEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock, notifier = Clock(), RecordingNotifier()
    settings = monitor_settings(tmp_path, sensors, extra="[scheduler]\nunreachable_after = 2\n")
    runtime = make_runtime(settings, notifier, clock)
    monkeypatch.delenv("ATP_BOT_TEST_WINRM")  # the WinRM password cannot be read
    for _ in range(2):
        run_monitor_cycle(runtime)
        clock.advance(minutes=5)
    notices = notifier.of("post_unreachable")
    assert [n.sensor for n in notices] == ["sensor01", "sensor02"]
    assert all(
        "config_error" in (n.detail or "") and "ATP_BOT_TEST_WINRM" in (n.detail or "") for n in notices
    )
    assert [h.counters.requests for h in sensors.hosts.values()] == [0, 0]

    monkeypatch.setenv("ATP_BOT_TEST_WINRM", WINRM_PASSWORD)
    run_monitor_cycle(runtime)
    assert [n.sensor for n in notifier.of("post_reachable")] == ["sensor01", "sensor02"]


def test_the_open_alerts_metric_reads_the_state_at_each_scrape(
    sensors: WinRMEmulator, tmp_path: Path
) -> None:
    clock = Clock()
    runtime = make_runtime(monitor_settings(tmp_path, sensors), RecordingNotifier(), clock)
    count_open_alerts(runtime.memory.open_incidents)
    assert REGISTRY.get_sample_value("atp_bot_alerts_open") == 0
    credential_errors(sensors, "sensor01", clock, 1)
    run_monitor_cycle(runtime)
    assert REGISTRY.get_sample_value("atp_bot_alerts_open") == 1

    def unreadable() -> int:
        raise OperationalError("SELECT", {}, Exception("database is gone"))

    count_open_alerts(unreadable)
    assert math.isnan(REGISTRY.get_sample_value("atp_bot_alerts_open") or 0)
    count_open_alerts(lambda: 0)  # the process-wide gauge no longer points at this test's state


def test_a_sensor_without_account_is_checked_and_alerted_once_whatever_the_accounts(
    sensors: WinRMEmulator, tmp_path: Path
) -> None:
    """Three accounts and a bad sensor that names none: one check, one alert (the lab saw one per
    account), whose *Update password* leaves the account to the operator; it closes like any other."""
    accounts = "".join(
        f'[[accounts]]\nid = "{a}"\nusername = "svc@{a}.test"\ndomain_controllers = ["ldaps://127.0.0.1:1"]\n'
        for a in ("a1", "a2", "a3")
    )
    own = f'[[sensors]]\nname = "sensor01"\nendpoint = "{sensors.endpoint("sensor01")}"\n'
    own += f'[[sensors]]\nname = "sensor02"\nendpoint = "{sensors.endpoint("sensor02")}"\naccount = "a2"\n'
    clock, notifier = Clock(), RecordingNotifier()
    runtime = make_runtime(monitor_settings(tmp_path, None, account=accounts, extra=own), notifier, clock)
    credential_errors(sensors, "sensor01", clock, 2)
    sensors.host("sensor02").set_service("AATPSensor", "Stopped")
    first = run_monitor_cycle(runtime)
    assert [r.name for r in first.results] == ["sensor01", "sensor02"]
    assert sensors.host("sensor01").counters.scripts == 1
    assert first.opened == ("a2", None)
    posted = notifier.of("post_incident")
    assert [(i.account_id, [s.sensor for s in i.sensors]) for i in posted] == [
        ("a2", ["sensor02"]),
        (None, ["sensor01"]),
    ]
    shared = posted[1]
    assert [(a.kind, a.account_id) for a in shared.actions] == [("update_password", None), ("recheck", None)]
    assert render_incident(shared).startswith("ALERT: sensors that name no account:")

    sensors.host("sensor02").set_service("AATPSensor", "Running")
    clock.advance(minutes=5)
    assert run_monitor_cycle(runtime).closed == ("a2", None)
    assert runtime.memory.incidents() == {}
    assert alert_rows(runtime) == [
        ("failed", "credential_incident", "a2"),
        ("failed", "credential_incident", None),
        ("ok", "recovered", "a2"),
        ("ok", "recovered", None),
    ]
