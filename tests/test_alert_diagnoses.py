"""Alerts that send the operator the right way: a stopped service with no credential error is a service
problem, and *Start service* followed by a clean check closes the incident at once (not at the next
cycle). Against the real Bolt app, the Slack emulator and the WinRM emulator."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.monitor.cycle import run_monitor_cycle
from bot.monitor.models import Incident, SensorIssue, ServiceState
from bot.monitor.render import render_incident, render_reachability
from commands.alerts import Action, incident_message, reachability_message
from lab.winrm.server import WinRMEmulator
from tests.conftest import SENSOR_WINRM_PASSWORD
from tests.monitor_tools import Clock, RecordingNotifier, make_runtime, monitor_settings
from tests.slack_lab import OPS, wait_for
from tests.test_slack_alerts import alert_messages, alerts_lab, buttons

NOW = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)
STOPPED = SensorIssue(sensor="dc02", stopped_services=(ServiceState(name="AATPSensor", state="Stopped"),))


def test_a_stopped_service_without_credential_errors_is_a_service_problem() -> None:
    incident = Incident(id="i1", account_id="svc", opened_at=NOW, updated_at=NOW, sensors=(STOPPED,))
    text, _ = incident_message(incident)
    assert text.startswith(":rotating_light: *Sensor service problem* on account *svc*")
    assert "Credential problem" not in text and "cannot use the directory service account" not in text
    plain = render_incident(incident)
    assert plain.startswith("ALERT: account svc: sensor services are not running, no credential error seen")
    assert "set-password" not in plain and "Start service" in plain

    erring = STOPPED.model_copy(update={"credential_errors": 2, "first_error": NOW, "last_error": NOW})
    both = incident.model_copy(update={"sensors": (erring,)})
    assert "*Credential problem* on account *svc*" in incident_message(both)[0]
    assert "sensors report credential problems" in render_incident(both)


def test_start_service_and_a_clean_check_close_the_incident_at_once(
    sensors: WinRMEmulator, env: None, tmp_path: Path
) -> None:
    sensors.host("sensor01").set_service("AATPSensor", "Stopped")
    with alerts_lab(sensors, tmp_path) as lab:
        scheduler = lab.runtime.services.scheduler
        assert scheduler is not None
        scheduler.run_cycle_now()
        [alert] = wait_for(lambda: alert_messages(lab))
        assert "Sensor service problem* on account *svc*" in lab.emulator.slash_command("alerts").text
        start_id = f"{Action.START_SERVICE}:sensor01:AATPSensor"
        value = str(buttons(alert.blocks)[start_id]["value"])  # type: ignore[attr-defined]

        lab.emulator.click(start_id, channel=OPS, message_ts=alert.ts, value=value)  # type: ignore[attr-defined]

        wait_for(lambda: sensors.host("sensor01").service_state("AATPSensor") == "Running", timeout=15)
        wait_for(
            lambda: "No open credential incidents" in lab.emulator.slash_command("alerts").text, timeout=30
        )
        wait_for(lambda: "Resolved" in next(m for m in lab.emulator.messages(OPS) if m.ts == alert.ts).text)  # type: ignore[attr-defined]


def test_a_sensor_that_refuses_the_winrm_credential_is_not_called_unreachable(
    sensors: WinRMEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ATP_BOT_TEST_WINRM", SENSOR_WINRM_PASSWORD)  # the `sensors` fixture's password
    clock, notifier = Clock(), RecordingNotifier()
    settings = monitor_settings(tmp_path, sensors, extra="[scheduler]\nunreachable_after = 1\n")
    runtime = make_runtime(settings, notifier, clock)
    sensors.set_fault("sensor02", "access_denied")
    try:
        run_monitor_cycle(runtime)
    finally:
        runtime.memory.close()
    (notice,) = notifier.of("post_unreachable")
    assert notice.access_denied
    text = reachability_message(notice)
    assert "refuses atp-bot's WinRM credential" in text and "cannot be reached" not in text
    assert "refuses atp-bot's WinRM credential" in render_reachability(notice)
