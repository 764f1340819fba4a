"""The portal step in the change path and the monitor: a save Defender for Identity does not have yet
stays pending (state every process shares) until confirmed once; meanwhile the account's credential
errors open no incident and the channel is reminded exactly once; Graph closing the credential health
issue after the save confirms it by itself (WinRM and Graph emulators, the recording notifier)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from bot.change.portal import PortalSteps, confirm_step, portal_step_needed
from bot.config import parse_settings
from bot.monitor.cycle import run_monitor_cycle
from bot.monitor.models import MessageRef, PortalNotice
from bot.monitor.portal_watch import watch_portal
from bot.monitor.render import render_portal
from lab.graph import CREDENTIALS_ISSUE, GraphEmulator
from lab.winrm.model import Host
from lab.winrm.server import WinRMEmulator
from tests.monitor_tools import (
    WINRM_PASSWORD,
    WINRM_USER,
    Clock,
    RecordingNotifier,
    credential_errors,
    make_runtime,
    monitor_settings,
    toml_str,
)
from tests.test_sensor_inventory import GRAPH_SECRET

THREAD = MessageRef(channel="C0OPS", ts="1764050000.000100")
SAVER = "slack:U0ALICE (alice)"


@pytest.fixture
def sensors(monkeypatch: pytest.MonkeyPatch) -> Iterator[WinRMEmulator]:
    monkeypatch.setenv("ATP_BOT_TEST_WINRM", WINRM_PASSWORD)
    monkeypatch.delenv("ATP_BOT_STORE_KEY", raising=False)
    with WinRMEmulator(username=WINRM_USER, password=WINRM_PASSWORD) as emulator:
        emulator.add_host(Host.sensor("sensor01"))
        emulator.add_host(Host.sensor("sensor02"))
        yield emulator


@pytest.fixture
def graph(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[GraphEmulator]:
    monkeypatch.setenv("ATP_BOT_TEST_GRAPH_SECRET", GRAPH_SECRET)
    monkeypatch.setenv("ATP_BOT_TEST_WINRM", "unused")
    monkeypatch.delenv("ATP_BOT_STORE_KEY", raising=False)
    with GraphEmulator(tmp_path / "graph", client_secret=GRAPH_SECRET) as emulator:
        yield emulator


def portal_rows(steps: PortalSteps) -> list[str]:
    return [step.account_id for step in steps.pending()]


def test_only_a_store_the_sensors_read_needs_no_portal_step(tmp_path: Path) -> None:
    account = '[[accounts]]\nid = "svc"\nusername = "svc@contoso.test"\ndomain_controllers = ["ldaps://dc"]\n'
    ata = (
        '[store]\nbackend = "ata-center"\n[store.ata_center]\nurl = "https://ata.contoso.test"\n'
        'username = "CONTOSO\\\\atp-bot"\npassword_env = "ATP_BOT_TEST_ATA"\n'
    )
    assert portal_step_needed(parse_settings(account))
    assert not portal_step_needed(parse_settings(account + ata))


def test_a_step_is_confirmed_once_and_a_newer_save_replaces_it(
    sensors: WinRMEmulator, tmp_path: Path
) -> None:
    clock = Clock()
    runtime = make_runtime(monitor_settings(tmp_path, sensors), RecordingNotifier(), clock)
    steps, audit = runtime.changes.portal, runtime.changes.audit
    assert steps is not None
    first = clock.now
    steps.open("svc", SAVER, first)
    clock.advance(minutes=3)
    steps.open("svc", "cli:bob", clock.now)  # a newer save: the earlier one's button confirms nothing
    assert confirm_step(steps, audit, "svc", "cli:carol", clock.now, saved_at=first) is None
    other = PortalSteps.for_settings(runtime.settings, runtime.changes.state_dir)  # another process
    confirmed = confirm_step(other, audit, "svc", "cli:carol", clock.now)
    assert confirmed is not None and confirmed.saved_by == "cli:bob" and confirmed.confirmed_by == "cli:carol"
    assert confirm_step(steps, audit, "svc", "slack:U0BOB (bob)", clock.now) is None  # once, whoever asks
    rows = [(r.actor, r.action, r.outcome) for r in audit.recent("svc")]
    assert rows == [("cli:carol", "portal-updated", "ok")]
    assert portal_rows(steps) == []


def test_credential_errors_while_pending_open_no_incident_and_remind_exactly_once(
    sensors: WinRMEmulator, tmp_path: Path
) -> None:
    clock, notifier = Clock(), RecordingNotifier()
    runtime = make_runtime(monitor_settings(tmp_path, sensors), notifier, clock)
    steps = runtime.changes.portal
    assert steps is not None
    saved_at = clock.now
    steps.open("svc", SAVER, saved_at)
    steps.set_thread("svc", saved_at, THREAD)

    credential_errors(sensors, "sensor01", clock, 3)  # the sensors still use the old password: expected
    assert run_monitor_cycle(runtime).opened == ()
    clock.advance(minutes=14)
    credential_errors(sensors, "sensor02", clock, 1)
    assert run_monitor_cycle(runtime).opened == ()
    assert watch_portal(runtime) == []  # 14 min: before the reminder (default 15)
    assert notifier.of("post_incident") == []

    clock.advance(minutes=1)
    (reminder,) = watch_portal(runtime)
    clock.advance(minutes=30)
    assert watch_portal(runtime) == []  # once
    ((thread, notice),) = notifier.of("post_portal")
    assert thread == THREAD and notice == reminder and notice.confirmed_at is None
    text = render_portal(notice)
    assert f"waiting for the portal step since {saved_at:%H:%M} UTC" in text
    assert "Settings > Identities > Directory service accounts > svc-atp@contoso.test" in text

    assert confirm_step(steps, runtime.changes.audit, "svc", SAVER, clock.now) is not None
    credential_errors(sensors, "sensor01", clock, 1)  # now an error is a finding again
    assert run_monitor_cycle(runtime).opened == ("svc",)


def test_the_reminder_waits_for_the_accounts_own_delay(sensors: WinRMEmulator, tmp_path: Path) -> None:
    account = (
        '[[accounts]]\nid = "svc"\nusername = "svc-atp@contoso.test"\n'
        'domain_controllers = ["ldaps://127.0.0.1:1"]\nportal_reminder_minutes = 60\n'
    )
    clock, notifier = Clock(), RecordingNotifier()
    runtime = make_runtime(monitor_settings(tmp_path, sensors, account=account), notifier, clock)
    assert runtime.changes.portal is not None
    runtime.changes.portal.open("svc", SAVER, clock.now)
    clock.advance(minutes=59)
    assert watch_portal(runtime) == []
    clock.advance(minutes=1)
    assert len(watch_portal(runtime)) == 1
    assert notifier.of("post_portal")[0][0] is None  # no thread (no channel was told): the channel


def test_mdi_seen_using_the_password_confirms_the_step_and_starts_the_checks(
    graph: GraphEmulator, tmp_path: Path
) -> None:
    extra = (
        "[graph]\nenabled = true\n"
        f"tenant_id = {toml_str(graph.tenant_id)}\nclient_id = {toml_str(graph.client_id)}\n"
        'client_secret_env = "ATP_BOT_TEST_GRAPH_SECRET"\n'
        f"authority_url = {toml_str(graph.authority_url)}\ngraph_url = {toml_str(graph.graph_url)}\n"
        f"ca_file = {toml_str(graph.tls.ca_file)}\n"
    )
    clock, notifier = Clock(), RecordingNotifier()
    runtime = make_runtime(monitor_settings(tmp_path, None, extra=extra), notifier, clock)
    steps = runtime.changes.portal
    assert steps is not None
    saved_at = clock.now
    steps.open("svc", SAVER, saved_at)
    steps.set_thread("svc", saved_at, THREAD)
    earlier = graph.add_issue(CREDENTIALS_ISSUE, domains=("contoso.test",))
    graph.set_status(earlier, "closed", at=saved_at - timedelta(minutes=30))  # before the save: no evidence
    issue = graph.add_issue(CREDENTIALS_ISSUE, domains=("contoso.test",))
    assert watch_portal(runtime) == []
    assert portal_rows(steps) == ["svc"]

    graph.set_status(issue, "closed", at=saved_at + timedelta(minutes=7))
    clock.advance(minutes=10)
    (notice,) = watch_portal(runtime)
    closed_at = saved_at + timedelta(minutes=7)
    assert isinstance(notice, PortalNotice) and notice.confirmed_at == closed_at
    assert render_portal(notice).startswith(
        f"Defender for Identity is using the new password of svc: confirmed at {closed_at:%H:%M} UTC"
    )
    assert portal_rows(steps) == []
    assert [name for name in notifier.names() if name != "post_portal"] == ["post_recheck"]
    assert notifier.of("post_recheck")[0][0] == THREAD  # the follow-up check, in the change's thread
    (row,) = [r for r in runtime.changes.audit.recent("svc") if r.action == "portal-updated"]
    assert row.actor == runtime.actor and CREDENTIALS_ISSUE in (row.detail or "")
    assert watch_portal(runtime) == []  # confirmed once


def test_sensors_that_stop_logging_credential_errors_confirm_the_step(
    sensors: WinRMEmulator, tmp_path: Path
) -> None:
    clock, notifier = Clock(), RecordingNotifier()
    runtime = make_runtime(monitor_settings(tmp_path, sensors), notifier, clock)
    steps = runtime.changes.portal
    assert steps is not None
    steps.open("svc", SAVER, clock.now)
    steps.set_thread("svc", clock.now, THREAD)
    assert run_monitor_cycle(runtime).opened == ()
    assert watch_portal(runtime) == []  # quiet, but no error was ever seen: nothing shows MDI has it

    clock.advance(minutes=5)
    credential_errors(sensors, "sensor01", clock, 2)  # the old password, still in use
    run_monitor_cycle(runtime)
    sensors.host("sensor02").set_service("AATPSensor", "Stopped")
    clock.advance(minutes=5)
    run_monitor_cycle(runtime)  # no new error, but a stopped sensor logs none: not evidence
    assert watch_portal(runtime) == []
    sensors.host("sensor02").set_service("AATPSensor", "Running")
    clock.advance(minutes=5)
    quiet_at = clock.now
    run_monitor_cycle(runtime)  # every sensor running, no new credential error: MDI uses the new one
    (notice,) = watch_portal(runtime)
    assert notice.confirmed_at == quiet_at and portal_rows(steps) == []
    assert "the sensors stopped logging credential errors: the last at 06:05 UTC" in render_portal(notice)
    assert notifier.of("post_recheck")[0][0] == THREAD
