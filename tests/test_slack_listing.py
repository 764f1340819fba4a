"""`/atp sensors` and `/atp history` through the Slack emulator and the WinRM emulator: the table has
column headers, and the listing is recorded as a listing (never "check failed")."""

from __future__ import annotations

from pathlib import Path

from commands import MODULES
from lab.winrm.server import WinRMEmulator
from tests.conftest import sensor_config
from tests.slack_lab import initialised_changes, running_lab, wait_for
from tests.test_sensor_inventory_slack import listing


def test_a_sensor_listing_has_headers_and_is_recorded_as_a_listing(
    sensors: WinRMEmulator, env: None, tmp_path: Path
) -> None:
    sensors.host("sensor01").set_service("AATPSensor", "Stopped")  # one sensor needs attention
    account = {"id": "svc", "username": "svc-atp@contoso.test", "domain_controllers": ["ldaps://127.0.0.1:1"]}
    config = {"state_dir": str(tmp_path / "state"), "accounts": [account], **sensor_config(sensors, "svc")}
    with running_lab("socket", modules=MODULES, config=config, changes=initialised_changes) as lab:
        lab.emulator.slash_command("sensors")
        answer = listing(lab, "*Sensors*: 2")
        header = answer["blocks"][1]["text"]["text"].strip("`").strip().splitlines()[0]
        assert header.split() == ["SENSOR", "GEN", "DSA", "HEALTH", "DEPLOYMENT"]

        def history() -> str | None:
            text = lab.emulator.slash_command("history").text
            return text if "sensors listed" in text else None

        shown = wait_for(history, timeout=20)
        assert "listing  -  ok: 2 sensors listed: 1 need attention, 0 unknown, 1 healthy" in shown
        assert "check  -  failed" not in shown
