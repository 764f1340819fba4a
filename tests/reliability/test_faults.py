"""Faults together, end to end through `/atp password`: the real Bolt app, a real Samba DC, the WinRM and
Slack emulators.

With the first domain controller down, half the sensors failing in different ways and Slack answering
429 and 5xx, the change still lands, and every failure is told for what it is. With every domain
controller down, nothing is saved and nobody is told that anything changed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from commands import MODULES
from lab.domain import LabDomain
from lab.samba import LabUser
from lab.winrm.model import Host
from lab.winrm.server import WinRMEmulator
from tests.conftest import closed_port_url, lab_account, sensor_config
from tests.slack_lab import (
    OPS,
    Lab,
    click_done,
    initialised_changes,
    open_modal,
    running_lab,
    values,
    view_text,
    wait_for,
)

pytestmark = pytest.mark.samba

FAULTS = {"sensor03": "timeout", "sensor04": "http401", "sensor05": "http500", "sensor06": "refused"}
HOST_TIMEOUT = 2.0


def faulty_fleet(sensors: WinRMEmulator) -> None:
    """sensor01 and sensor02 (the fixture's) stay healthy; four more each fail their own way."""
    for name, fault in FAULTS.items():
        sensors.add_host(Host.sensor(name))
        sensors.set_fault(name, fault)


def lab_config(
    tmp_path: Path, lab_domain: LabDomain, user: LabUser, sensors: WinRMEmulator, dcs: list[str]
) -> dict[str, object]:
    return {
        "state_dir": str(tmp_path / "state"),
        "accounts": [{**lab_account(lab_domain, user), "domain_controllers": dcs}],
        "sensor_checks": {"host_timeout": HOST_TIMEOUT},
        **sensor_config(sensors, "svc"),
    }


def thread_report(lab: Lab, parent_ts: str) -> str | None:
    """The final sensor report in the announcement's thread: every line of its blocks."""
    thread = [m for m in lab.emulator.messages(OPS) if m.thread_ts == parent_ts]
    if not thread or "need attention" not in thread[-1].text:
        return None
    return "\n".join(b["text"]["text"] for b in thread[-1].blocks if b.get("type") == "section")


def test_first_dc_down_failing_sensors_and_slack_errors(
    lab_domain: LabDomain, fresh_user: LabUser, sensors: WinRMEmulator, env: None, tmp_path: Path
) -> None:
    faulty_fleet(sensors)
    dead = closed_port_url()
    config = lab_config(tmp_path, lab_domain, fresh_user, sensors, [dead, lab_domain.dc.ldaps_url])
    with running_lab("socket", modules=MODULES, config=config, changes=initialised_changes) as lab:
        lab.emulator.fail("chat.postMessage", status=429, retry_after=1)
        lab.emulator.fail("chat.update", status=503)
        view_id = open_modal(lab)
        lab.emulator.submit_view(view_id, values(fresh_user.password))
        wait_for(lambda: "Saved." in view_text(lab, view_id), timeout=20)

        announcement = wait_for(lambda: [m for m in lab.emulator.messages(OPS) if m.thread_ts is None])[0]
        assert "changed the directory service account password for *svc*" in announcement.text
        click_done(lab.emulator, announcement)  # the portal step: the follow-up checks start now
        assert lab_domain.dc.ldaps_url.split("//")[1] in announcement.text  # verified by the DC that is up
        report = wait_for(lambda: thread_report(lab, announcement.ts), timeout=30)
        assert "4 of 6 sensor(s) need attention" in report
        lines = {name: next(x for x in report.splitlines() if f"*{name}*" in x) for name in FAULTS}
        for name, told in (
            ("sensor03", "not checked (timeout:"),
            ("sensor04", "not checked (access_denied: credentials rejected (HTTP 401); check [winrm]"),
            ("sensor05", "not checked (winrm_fault: WS-Management fault (HTTP 500)"),
            ("sensor06", "not checked (unreachable: connection refused)"),
        ):
            assert told in lines[name]
        assert [c.status for c in lab.emulator.calls("chat.postMessage")][:2] == [429, 200]
        assert 503 in [c.status for c in lab.emulator.calls("chat.update")]

        changes = lab.runtime.services.changes
        assert changes is not None
        saved = changes.store.read("svc")
        assert saved is not None and saved.get_secret_value() == fresh_user.password
        sensors.stop()  # ends the emulated host that never answers, before the lab checks for leftovers


def test_every_dc_down_saves_nothing_and_announces_nothing(
    lab_domain: LabDomain, fresh_user: LabUser, sensors: WinRMEmulator, env: None, tmp_path: Path
) -> None:
    config = lab_config(tmp_path, lab_domain, fresh_user, sensors, [closed_port_url(), closed_port_url()])
    with running_lab("http", modules=MODULES, config=config, changes=initialised_changes) as lab:
        view_id = open_modal(lab)
        lab.emulator.submit_view(view_id, values(fresh_user.password))
        wait_for(lambda: "Not saved" in view_text(lab, view_id), timeout=20)
        told = view_text(lab, view_id)
        assert "No domain controller could be reached." in told and "Nothing was changed." in told
        assert lab.emulator.calls("chat.postMessage") == []
        changes = lab.runtime.services.changes
        assert changes is not None
        assert changes.store.read("svc") is None
        assert [h.counters.scripts for h in sensors.hosts.values()] == [0, 0]
