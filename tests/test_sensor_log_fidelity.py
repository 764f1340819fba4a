"""Classic sensor log fidelity: the log folder from the service's binary path and
SensorCustomLogLocation, and errors counted once across several roll-overs (pywinrm against the WinRM
emulator, which follows check_sensor.ps1)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.config import Settings
from bot.sensors import check_sensors
from lab.winrm.model import Host, log_line
from lab.winrm.server import WinRMEmulator
from tests.winrm_lab import make_settings

ERROR = "[DirectoryServices] The supplied credential is invalid."
CUSTOM = "D:\\MDI\\Logs"


def settings_for(emulator: WinRMEmulator) -> Settings:
    return make_settings(
        [{"name": n, "endpoint": emulator.endpoint(n)} for n in emulator.hosts], checks={"host_timeout": 10}
    )


def lines(start: datetime, count: int) -> list[str]:
    """Distinct lines (the sensor stamps each to 0.1 ms; a file is known by its first line)."""
    return [log_line(start + timedelta(milliseconds=i), ERROR) for i in range(count)]


def test_errors_are_counted_once_across_two_roll_overs(emulator: WinRMEmulator) -> None:
    host = Host.sensor("s1")
    emulator.add_host(host)
    settings = settings_for(emulator)
    now = datetime.now(UTC)
    host.append_log(*lines(now, 1))
    (first,) = check_sensors(settings, since=now - timedelta(minutes=5))
    assert first.credential_errors is not None and first.credential_errors.count == 1
    host.append_log(*lines(now + timedelta(seconds=1), 1))  # in the old file, after the position
    host.rotate_log()
    host.append_log(*lines(now + timedelta(seconds=2), 2))  # in a file rolled over before the next check
    host.rotate_log()
    host.append_log(*lines(now + timedelta(seconds=3), 1))  # in the current file
    (second,) = check_sensors(settings, positions={"s1": first.position})  # type: ignore[dict-item]
    assert second.credential_errors is not None
    assert second.credential_errors.count == 4
    assert second.credential_errors.rotated


def test_the_log_folder_comes_from_the_binary_path(emulator: WinRMEmulator) -> None:
    host = Host.sensor("s1")
    old = host.error_log_path
    host.upgrade("2.251.1.1")  # the service now runs from the new version folder
    emulator.add_host(host)
    now = datetime.now(UTC)
    host.append_log(*lines(now, 1))
    host.append_log(*lines(now, 2), path=old)  # written last: what the `*` glob alone would pick
    (result,) = check_sensors(settings_for(emulator), since=now - timedelta(minutes=5))
    assert result.credential_errors is not None
    assert result.credential_errors.log_path == host.error_log_path
    assert result.credential_errors.count == 1


def test_sensor_custom_log_location_is_honoured(emulator: WinRMEmulator) -> None:
    host = Host.sensor("s1")
    host.custom_log_location = CUSTOM
    emulator.add_host(host)
    now = datetime.now(UTC)
    host.append_log(*lines(now, 1), path=f"{CUSTOM}\\Microsoft.Tri.Sensor-Errors.log")
    (result,) = check_sensors(settings_for(emulator), since=now - timedelta(minutes=5))
    assert result.credential_errors is not None
    assert result.credential_errors.log_path == f"{CUSTOM}\\Microsoft.Tri.Sensor-Errors.log"
    assert result.credential_errors.count == 1
