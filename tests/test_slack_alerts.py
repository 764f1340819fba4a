"""Monitor alerts in Slack end to end: the real Bolt app and Slack notifier against the Slack emulator,
the WinRM emulator and the real change path. Monitor jobs are run directly (no waiting)."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.monitor.models import Incident, SensorIssue, ServiceState
from bot.monitor.scheduler import AUDIT_HEAD_JOB
from commands import MODULES
from commands.alerts import Action, incident_message
from commands.password.views import Action as PasswordAction
from lab.winrm.model import log_line
from lab.winrm.server import WinRMEmulator
from tests.conftest import sensor_config
from tests.slack_lab import ALICE, MALLORY, OPS, Lab, initialised_changes, running_lab, wait_for
from tests.storetools import check_event


@contextmanager
def alerts_lab(sensors: WinRMEmulator, tmp_path: Path, **tables: object) -> Iterator[Lab]:
    account = {"id": "svc", "username": "svc-atp@contoso.test", "domain_controllers": ["ldaps://127.0.0.1:1"]}
    config = {
        "state_dir": str(tmp_path / "state"),
        "accounts": [account],
        **sensor_config(sensors, "svc"),
        **tables,
    }
    with running_lab(
        "socket", modules=MODULES, config=config, changes=initialised_changes, monitor=True
    ) as lab:
        yield lab


def alert_messages(lab: Lab) -> list[object]:
    return [m for m in lab.emulator.messages(OPS) if m.thread_ts is None and "problem* on" in m.text]


def buttons(blocks: list[dict[str, object]]) -> dict[str, dict[str, object]]:
    found: dict[str, dict[str, object]] = {}
    for block in blocks:
        for element in block.get("elements", []) or []:  # type: ignore[attr-defined]
            if element.get("type") == "button":
                found[str(element["action_id"])] = element
    return found


def test_incident_alert_buttons_and_recovery(sensors: WinRMEmulator, env: None, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    sensors.host("sensor01").append_log(
        log_line(now, "DirectoryServicesClient: The supplied credential is invalid.")
    )
    sensors.host("sensor02").set_service("AATPSensor", "Stopped")
    with alerts_lab(sensors, tmp_path) as lab:
        scheduler = lab.runtime.services.scheduler
        assert scheduler is not None
        scheduler.run_cycle_now()
        alert = wait_for(lambda: alert_messages(lab))[0]
        assert "*sensor01*: 1 credential error(s)" in alert.text  # type: ignore[attr-defined]
        assert "service `AATPSensor` is Stopped" in alert.text  # type: ignore[attr-defined]
        found = buttons(alert.blocks)  # type: ignore[attr-defined]
        assert found[PasswordAction.OPEN]["value"] == "svc"
        start_id = f"{Action.START_SERVICE}:sensor02:AATPSensor"
        assert start_id in found
        assert "confirm" in found[start_id]

        # A second cycle with nothing new updates nothing and posts nothing.
        scheduler.run_cycle_now()
        assert len(alert_messages(lab)) == 1

        # "Update password" opens the password modal for the account.
        ts = alert.ts  # type: ignore[attr-defined]
        lab.emulator.click(PasswordAction.OPEN, channel=OPS, message_ts=ts, value="svc")
        view = wait_for(lambda: lab.emulator.open_views(ALICE))[-1]
        assert "Account *svc*" in json.dumps(view.data["blocks"])

        # Somebody not allowed cannot start a service.
        value = str(found[start_id]["value"])
        lab.emulator.click(start_id, user=MALLORY, channel=OPS, message_ts=ts, value=value)
        refusal = wait_for(lambda: [m for m in lab.emulator.messages(OPS) if m.ephemeral_to == MALLORY])
        assert "not allowed" in refusal[0].text
        assert sensors.host("sensor02").service_state("AATPSensor") == "Stopped"

        # "Start service" (after Slack's confirmation dialog) starts it and says so in the alert's thread.
        lab.emulator.click(start_id, channel=OPS, message_ts=ts, value=value)
        wait_for(lambda: sensors.host("sensor02").service_state("AATPSensor") == "Running", timeout=15)
        reply = wait_for(
            lambda: [m for m in lab.emulator.messages(OPS) if m.thread_ts == ts and "started" in m.text]
        )
        assert "started `AATPSensor` on *sensor02*" in reply[0].text
        changes = lab.runtime.services.changes
        assert changes is not None
        assert ("start-service", "ok") in [(r.action, r.outcome) for r in changes.audit.recent()]

        # "Re-check now": the sensors are clean now, so the incident closes with a recovery message.
        lab.emulator.click(Action.RECHECK, channel=OPS, message_ts=ts, value="svc")
        wait_for(lambda: [m for m in lab.emulator.messages(OPS) if m.ephemeral_to == ALICE], timeout=20)
        resolved = wait_for(
            lambda: [m for m in lab.emulator.messages(OPS) if m.thread_ts == ts and "Resolved" in m.text]
        )
        assert "account *svc*" in resolved[0].text
        assert "Resolved" in next(m for m in lab.emulator.messages(OPS) if m.ts == ts).text
        assert any(r.action == "alert" for r in changes.audit.recent())


def test_alerts_subcommand_lists_open_incidents(sensors: WinRMEmulator, env: None, tmp_path: Path) -> None:
    with alerts_lab(sensors, tmp_path) as lab:
        assert "No open credential incidents" in lab.emulator.slash_command("alerts").text
        sensors.host("sensor01").set_service("AATPSensor", "Stopped")
        scheduler = lab.runtime.services.scheduler
        assert scheduler is not None
        scheduler.run_cycle_now()
        assert "Sensor service problem* on account *svc*" in lab.emulator.slash_command("alerts").text


@pytest.mark.parametrize("fault", [500])
def test_a_slack_outage_delays_the_alert_but_does_not_lose_it(
    sensors: WinRMEmulator, env: None, tmp_path: Path, fault: int
) -> None:
    sensors.host("sensor01").set_service("AATPSensor", "Stopped")
    with alerts_lab(sensors, tmp_path) as lab:
        scheduler = lab.runtime.services.scheduler
        assert scheduler is not None
        lab.emulator.fail("chat.postMessage", status=fault, times=10)
        result = scheduler.run_cycle_now()
        assert not result.delivered
        assert alert_messages(lab) == []
        lab.emulator.reset()
        scheduler.run_cycle_now()
        assert len(alert_messages(lab)) == 1


def test_the_daily_audit_head_reaches_the_channel(
    sensors: WinRMEmulator, env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ATP_BOT_AUDIT_KEY", base64.urlsafe_b64encode(os.urandom(32)).decode())
    with alerts_lab(sensors, tmp_path, audit={"announce_head": True}) as lab:
        scheduler = lab.runtime.services.scheduler
        assert scheduler is not None
        trail = scheduler.monitor.changes.audit
        trail.record(check_event("cli:alice", account="svc"))
        scheduler.run_job_now(AUDIT_HEAD_JOB)
        anchor = trail.verify().anchor
        (message,) = [m for m in lab.emulator.messages(OPS) if "Audit trail" in m.text]
    assert anchor is not None
    assert "Audit trail intact" in message.text
    assert f"`atp-bot audit verify --anchor {anchor}`" in message.text


HOSTILE = "The supplied credential is invalid. ` <!channel> <https://evil.example/login|bank> &lt; *now*"


def mrkdwn_texts(text: str, blocks: object) -> list[str]:
    """The fallback text and every mrkdwn text of a message's blocks, as Slack received them."""
    found = [text]
    for block in json.loads(blocks) if isinstance(blocks, str) else blocks or []:
        for part in [block.get("text"), *(block.get("elements") or [])]:
            if isinstance(part, dict) and part.get("type") == "mrkdwn":
                found.append(str(part["text"]))
    return found


def assert_inert(texts: list[str]) -> None:
    joined = "\n".join(texts)
    assert "<!channel>" not in joined and "<https://evil" not in joined and "<!here>" not in joined
    assert "&lt;!channel&gt;" in joined  # shown as the sensor wrote it
    assert "&amp;lt;" in joined  # the sensor's own `&lt;` is not decoded into `<`


def test_hostile_sensor_output_is_inert_in_alerts_and_status(
    sensors: WinRMEmulator, env: None, tmp_path: Path
) -> None:
    """A log line and a service state written to break out of the bot's formatting reach Slack escaped:
    through the real monitor and `/atp status`, as the Slack emulator recorded them."""
    sensors.host("sensor01").append_log(log_line(datetime.now(UTC), f"DirectoryServicesClient: {HOSTILE}"))
    sensors.host("sensor02").set_service("AATPSensor", "Stopped <!here> ` &lt; <!channel>")
    with alerts_lab(sensors, tmp_path) as lab:
        scheduler = lab.runtime.services.scheduler
        assert scheduler is not None
        scheduler.run_cycle_now()
        alert = wait_for(lambda: alert_messages(lab))[0]
        texts = mrkdwn_texts(alert.text, alert.blocks)  # type: ignore[attr-defined]
        assert_inert(texts)
        (sample,) = [t for t in texts if t.startswith("`")]
        assert sample.count("`") == 2  # the sensor's backtick did not close the code span

        lab.emulator.slash_command("status")

        def final() -> list[str] | None:
            answers = [c.args for c in lab.emulator.calls("response_url")]
            done = [a for a in answers if "need attention" in str(a.get("text", ""))]
            return mrkdwn_texts(done[-1]["text"], done[-1].get("blocks")) if done else None

        status = wait_for(final, timeout=30)
        assert_inert(status)
        assert any("e.g. `" in t for t in status)


def test_the_alert_of_sensors_without_account_lets_the_user_pick_the_account() -> None:
    now = datetime.now(UTC)
    issue = SensorIssue(
        sensor="sensor01", stopped_services=(ServiceState(name="AATPSensor", state="Stopped"),)
    )
    incident = Incident(id="i1", account_id=None, opened_at=now, updated_at=now, sensors=(issue,))
    text, blocks = incident_message(incident)
    assert "*Sensor service problem* on the sensors that name no account" in text
    found = buttons(blocks)
    assert "value" not in found[PasswordAction.OPEN]  # the modal then offers every account
    assert "value" not in found[Action.RECHECK]
    closed = incident.model_copy(update={"closed_at": now})
    assert "*Resolved*: the sensors that name no account" in incident_message(closed)[0]


def test_status_lists_a_sensor_without_account_once(
    sensors: WinRMEmulator, env: None, tmp_path: Path
) -> None:
    """`/atp status` with several accounts: the sensor that names none is checked and listed once."""
    accounts = [
        {"id": a, "username": f"svc@{a}.test", "domain_controllers": ["ldaps://127.0.0.1:1"]}
        for a in ("svc", "fabrikam", "tailspin")
    ]
    config: dict[str, object] = {"state_dir": str(tmp_path / "state"), "accounts": accounts}
    config |= sensor_config(sensors, "svc")
    config["sensors"][0].pop("account")  # type: ignore[index]
    with running_lab("socket", modules=MODULES, config=config, changes=initialised_changes) as lab:
        for command in ("status", "status svc", "status fabrikam"):
            before = len(lab.emulator.calls("response_url"))
            lab.emulator.slash_command(command)

            def final(since: int = before) -> str | None:
                texts = [str(c.args.get("text", "")) for c in lab.emulator.calls("response_url")[since:]]
                return next((t for t in texts if "sensor(s) are running" in t), None)

            wait_for(final, timeout=30)
            shown = json.dumps(lab.emulator.calls("response_url")[-1].args.get("blocks"))
            assert shown.count("*sensor01*") == 1, command
            assert shown.count("*sensor02*") == (0 if command == "status fabrikam" else 1), command
    assert sensors.host("sensor01").counters.scripts == 3


def test_buttons_whose_work_fails_tell_the_person(
    sensors: WinRMEmulator, env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with alerts_lab(sensors, tmp_path) as lab:
        scheduler = lab.runtime.services.scheduler
        assert scheduler is not None

        def cycle_fails() -> None:
            raise RuntimeError("the monitor state is unreadable")

        monkeypatch.setattr(scheduler, "run_cycle_now", cycle_fails)
        lab.emulator.click(Action.RECHECK, channel=OPS, message_ts="1.0", value="svc")
        told = wait_for(
            lambda: [m for m in lab.emulator.messages(OPS) if m.ephemeral_to == ALICE], timeout=15
        )
        assert (
            told[0].text == ":warning: Something went wrong: RuntimeError: the monitor state is unreadable."
        )

        lab.emulator.fail("views.open", status=200, error="expired_trigger_id")
        lab.emulator.click(PasswordAction.OPEN, channel=OPS, message_ts="1.0", value="svc")
        told = wait_for(
            lambda: [m for m in lab.emulator.messages(OPS) if m.ephemeral_to == ALICE][1:], timeout=15
        )
        assert "Something went wrong" in told[0].text
        assert "views.open" in told[0].text
        changes = lab.runtime.services.changes
        assert changes is not None
        rows = [(r.action, r.outcome, r.reason) for r in reversed(changes.audit.recent())]
        assert rows == [("check", "error", "internal-error"), ("change", "error", "internal-error")]
