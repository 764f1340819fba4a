"""gMSA retrieval failures in the sensor log: counted, and reported with their own reason (pywinrm against
the WinRM emulator)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.cli import main
from bot.monitor.models import SensorIssue
from bot.monitor.render import _sensor_line
from lab.winrm.model import Host, log_line
from lab.winrm.server import WinRMEmulator
from tests.winrm_lab import settings_toml

GMSA_LINE = (
    "[DirectoryServices] failed to retrieve group managed service account password. "
    "[DomainControllerDnsName=dc1.contoso.test Domain=contoso.test UserName=mdi-gmsa$]"
)
GMSA_LINE_2 = "GMSA password could not be retrieved [errorCode=AccessDenied AccountName=mdi-gmsa$]"
WRONG_PASSWORD = "[DirectoryServices] The supplied credential is invalid."


def write_config(tmp_path: Path, emulator: WinRMEmulator, checks: dict[str, object] | None = None) -> Path:
    sensors = [{"name": n, "endpoint": emulator.endpoint(n)} for n in emulator.hosts]
    path = tmp_path / "atp-bot.toml"
    path.write_text(settings_toml(sensors, checks={"host_timeout": 10, **(checks or {})}), encoding="utf-8")
    return path


def test_gmsa_and_password_errors_each_have_their_reason(
    emulator: WinRMEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    now = datetime.now(UTC)
    gmsa, wrong = Host.sensor("gmsa1"), Host.sensor("pwd1")
    gmsa.append_log(log_line(now, GMSA_LINE), log_line(now, GMSA_LINE_2))
    wrong.append_log(log_line(now, WRONG_PASSWORD))
    emulator.add_host(gmsa)
    emulator.add_host(wrong)
    config = write_config(tmp_path, emulator)

    assert main(["--config", str(config), "check", "--json"]) == 1
    results = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert (results["gmsa1"]["credential_errors"], results["gmsa1"]["credential_error_reason"]) == (2, "gmsa")
    assert (results["pwd1"]["credential_errors"], results["pwd1"]["credential_error_reason"]) == (
        1,
        "password",
    )

    assert main(["--config", str(config), "check"]) == 1
    out = capsys.readouterr().out
    assert "gmsa1: 2 gMSA password retrieval error(s) (the sensor may not retrieve" in out
    assert "pwd1: 1 credential error(s) in the sensor log" in out


def test_gmsa_patterns_are_configurable(
    emulator: WinRMEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    host = Host.sensor("gmsa1")
    host.append_log(log_line(datetime.now(UTC), GMSA_LINE))
    emulator.add_host(host)
    assert (
        main(["--config", str(write_config(tmp_path, emulator, {"gmsa_error_patterns": []})), "check"]) == 0
    )
    capsys.readouterr()


def test_alerts_name_the_gmsa_reason() -> None:
    issue = SensorIssue(sensor="dc1", credential_errors=3, reason="gmsa")
    assert "3 gMSA password retrieval error(s)" in _sensor_line(issue)
