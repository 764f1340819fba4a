"""bot.sensors.checks through the real pywinrm client against the WinRM emulator."""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.cli import main
from bot.config import ConfigError
from bot.sensors.checks import (
    NOT_INSTALLED,
    Failure,
    FailureKind,
    LogPosition,
    SensorResult,
    check_sensors,
    start_service,
)
from bot.sensors.http_guard import MAX_RESPONSE_BYTES
from bot.sensors.winrm_runner import (
    MAX_ERROR_TEXT,
    MAX_OUTPUT_BYTES,
    clixml_text,
    wait_for_shell_closes,
)
from lab.winrm.model import Host, log_line
from lab.winrm.server import WinRMEmulator
from tests.winrm_lab import CANARY, make_settings, settings_toml

CRED = "The supplied credential is invalid."
NOW = datetime.now(UTC)


def one(emulator: WinRMEmulator, host: Host, **kwargs: object) -> tuple[Host, object]:
    endpoint = emulator.add_host(host)
    settings = make_settings([{"name": host.name, "endpoint": endpoint, "kind": host.kind}], **kwargs)  # type: ignore[arg-type]
    return host, settings


def test_healthy_sensor(emulator: WinRMEmulator) -> None:
    host, settings = one(emulator, Host.sensor("sensor01"))
    (result,) = check_sensors(settings)  # type: ignore[arg-type]
    assert result.healthy
    assert result.reachable
    assert result.problems == []
    assert {s.name: s.state for s in result.services} == {
        "AATPSensor": "Running",
        "AATPSensorUpdater": "Running",
    }
    assert result.credential_errors is not None
    assert result.credential_errors.count == 0
    assert result.position is not None
    assert result.duration > 0
    assert host.counters.unknown_scripts == 0


def test_stopped_and_missing_services(emulator: WinRMEmulator) -> None:
    host = Host.sensor("sensor01")
    host.set_service("AATPSensor", "Stopped")
    host.set_service("AATPSensorUpdater", None)
    _, settings = one(emulator, host)
    (result,) = check_sensors(settings)  # type: ignore[arg-type]
    assert not result.healthy
    assert result.reachable
    assert result.to_json()["services"] == {"AATPSensor": "Stopped", "AATPSensorUpdater": NOT_INSTALLED}
    assert "service AATPSensor is Stopped" in result.problems


def test_ata_gateway_defaults(emulator: WinRMEmulator) -> None:
    host = Host.sensor("gw01", "ata")
    host.append_log(log_line(NOW - timedelta(minutes=1), CRED))
    _, settings = one(emulator, host)
    (result,) = check_sensors(settings)  # type: ignore[arg-type]
    assert [s.name for s in result.services] == ["ATAGateway"]
    assert result.credential_errors is not None
    assert result.credential_errors.count == 1
    assert result.credential_errors.log_path.endswith("\\Gateway\\Logs\\Microsoft.Tri.Gateway-Errors.log")


def test_credential_errors_after_a_given_time(emulator: WinRMEmulator) -> None:
    host = Host.sensor("sensor01")
    change = NOW - timedelta(minutes=30)
    host.append_log(log_line(change - timedelta(hours=1), f"old {CRED}"))
    host.append_log(log_line(change - timedelta(minutes=1), "unrelated error"))
    first, last = change + timedelta(minutes=1), change + timedelta(minutes=20)
    host.append_log(log_line(first, "ExtendedException: Failed to bind"), f"   ---> LdapException: {CRED}")
    host.append_log(log_line(last, f"DirectoryServicesClient {CRED}"))
    _, settings = one(emulator, host)
    (result,) = check_sensors(settings, since=change)  # type: ignore[arg-type]
    errors = result.credential_errors
    assert errors is not None
    assert errors.count == 2
    assert errors.first == first.replace(microsecond=first.microsecond // 100 * 100)
    assert errors.last == last.replace(microsecond=last.microsecond // 100 * 100)
    assert errors.sample
    assert CRED in errors.sample
    assert "credential error" in result.problems[0]
    (earlier,) = check_sensors(settings, since=change - timedelta(hours=2))  # type: ignore[arg-type]
    assert earlier.credential_errors is not None
    assert earlier.credential_errors.count == 3


def test_incremental_scan_reads_only_new_bytes(emulator: WinRMEmulator) -> None:
    host, settings = one(emulator, Host.sensor("sensor01", filler_bytes=1 << 20))
    (first,) = check_sensors(settings)  # type: ignore[arg-type]
    assert first.credential_errors is not None
    assert first.credential_errors.count == 0
    # The time-window scan stops at the first old line: far less than the 1 MB log.
    assert host.counters.log_bytes_read <= 64 * 1024 + 2 * 1024  # one 64 KiB chunk and the identity
    assert first.position is not None
    position = LogPosition.from_json(first.position.to_json())
    new = [log_line(NOW, f"n{i} {CRED}") for i in range(3)]
    host.append_log(*new)
    before = host.counters.log_bytes_read
    (second,) = check_sensors(settings, positions={"sensor01": position})  # type: ignore[arg-type]
    appended = sum(len(line) + 2 for line in new)
    transferred = host.counters.log_bytes_read - before
    assert second.credential_errors is not None
    assert second.credential_errors.count == 3
    assert appended <= transferred <= appended + 2 * 1024  # new bytes + two 1 KiB identity reads
    assert second.credential_errors.bytes_read == transferred
    assert second.position is not None
    assert second.position.offset == first.position.offset + appended
    # Nothing new: nothing but the identity checks is read.
    before = host.counters.log_bytes_read
    (third,) = check_sensors(settings, positions={"sensor01": second.position})  # type: ignore[arg-type]
    assert third.credential_errors is not None
    assert third.credential_errors.count == 0
    assert host.counters.log_bytes_read - before <= 2 * 1024


def test_partial_last_line_is_read_once_complete(emulator: WinRMEmulator) -> None:
    host, settings = one(emulator, Host.sensor("sensor01"))
    (first,) = check_sensors(settings)  # type: ignore[arg-type]
    log = host.find(host.error_log_path)
    assert log is not None
    log.append(log_line(NOW, "The supplied credential"))  # the writer is mid-line
    (second,) = check_sensors(settings, positions={"sensor01": first.position})  # type: ignore[arg-type]
    assert second.credential_errors is not None
    assert second.credential_errors.count == 0
    assert second.position is not None
    assert first.position is not None
    assert second.position.offset == first.position.offset
    log.append(" is invalid.\r\n")
    (third,) = check_sensors(settings, positions={"sensor01": second.position})  # type: ignore[arg-type]
    assert third.credential_errors is not None
    assert third.credential_errors.count == 1


def test_rotation_continues_in_the_new_file(emulator: WinRMEmulator) -> None:
    host, settings = one(emulator, Host.sensor("sensor01"))
    host.append_log(log_line(NOW - timedelta(minutes=3), "started"))
    (first,) = check_sensors(settings)  # type: ignore[arg-type]
    host.append_log(log_line(NOW - timedelta(minutes=2), f"before rotation {CRED}"))
    archived = host.rotate_log()
    host.append_log(log_line(NOW - timedelta(minutes=1), f"after rotation {CRED}"))
    (second,) = check_sensors(settings, positions={"sensor01": first.position})  # type: ignore[arg-type]
    errors = second.credential_errors
    assert errors is not None
    assert errors.count == 2
    assert errors.rotated
    assert not errors.reset
    assert archived.endswith("Microsoft.Tri.Sensor-Errors-Archived-00000.log")
    assert second.position is not None
    assert second.position.file_id != first.position.file_id


def test_truncation_restarts_from_the_beginning(emulator: WinRMEmulator) -> None:
    host, settings = one(emulator, Host.sensor("sensor01"))
    host.append_log(log_line(NOW, "one"), log_line(NOW, "two"))
    (first,) = check_sensors(settings)  # type: ignore[arg-type]
    host.truncate_log()
    host.append_log(log_line(NOW, CRED))
    (second,) = check_sensors(settings, positions={"sensor01": first.position})  # type: ignore[arg-type]
    errors = second.credential_errors
    assert errors is not None
    assert errors.count == 1
    assert errors.reset
    assert not errors.rotated


def test_sensor_update_moves_to_the_new_versioned_folder(emulator: WinRMEmulator) -> None:
    host, settings = one(emulator, Host.sensor("sensor01"))
    host.append_log(log_line(NOW, "started"))
    (first,) = check_sensors(settings)  # type: ignore[arg-type]
    host.append_log(log_line(NOW, f"last words {CRED}"))
    time.sleep(0.01)
    host.upgrade("2.251.0.0")
    host.append_log(log_line(NOW, f"new version {CRED}"))
    (second,) = check_sensors(settings, positions={"sensor01": first.position})  # type: ignore[arg-type]
    errors = second.credential_errors
    assert errors is not None
    assert errors.count == 2
    assert errors.rotated
    assert "\\2.251.0.0\\Logs\\" in errors.log_path


def test_scan_is_bounded_by_max_scan_bytes(emulator: WinRMEmulator) -> None:
    host = Host.sensor("sensor01")
    host.append_log(*[log_line(NOW, f"line {i} {CRED}") for i in range(2000)])
    _, settings = one(emulator, host, checks={"max_scan_bytes": 16384})
    (result,) = check_sensors(settings, since=NOW - timedelta(days=1))  # type: ignore[arg-type]
    errors = result.credential_errors
    assert errors is not None
    assert not errors.complete
    assert 0 < errors.count < 2000
    assert errors.bytes_read <= 16384 + 2048


def test_unreachable_hosts_do_not_hold_up_the_others(emulator: WinRMEmulator) -> None:
    hosts = {
        "healthy": Host.sensor("healthy"),
        "refused": Host.sensor("refused"),
        "denied": Host.sensor("denied"),
        "slow": Host.sensor("slow"),
        "hangs": Host.sensor("hangs"),
        "forbidden": Host.sensor("forbidden"),
        "broken": Host.sensor("broken"),
        "garbled": Host.sensor("garbled"),
    }
    faults = {
        "refused": "refused",
        "denied": "http401",
        "slow": "timeout",
        "hangs": "hang",
        "forbidden": "access_denied",
        "broken": "http500",
        "garbled": "bad_output",
    }
    for name, fault in faults.items():
        hosts[name].fault = fault  # type: ignore[assignment]
    sensors = [{"name": n, "endpoint": emulator.add_host(h)} for n, h in hosts.items()]
    settings = make_settings(sensors, checks={"host_timeout": 1.5, "pool_size": 8})
    seen: list[tuple[str, float]] = []
    started = time.monotonic()

    def record(result: SensorResult) -> None:
        assert threading.current_thread() is threading.main_thread()
        seen.append((result.name, time.monotonic() - started))

    results = check_sensors(settings, on_result=record)
    by_name = {r.name: r for r in results}
    assert [r.name for r in results] == list(hosts)
    assert by_name["healthy"].healthy
    kinds = {n: by_name[n].failure.kind for n in faults if by_name[n].failure}  # type: ignore[union-attr]
    assert kinds == {
        "refused": FailureKind.UNREACHABLE,
        "denied": FailureKind.ACCESS_DENIED,
        "slow": FailureKind.TIMEOUT,
        "hangs": FailureKind.TIMEOUT,
        "forbidden": FailureKind.ACCESS_DENIED,
        "broken": FailureKind.WINRM_FAULT,
        "garbled": FailureKind.SCRIPT_ERROR,
    }
    assert not any(by_name[n].reachable for n in faults)
    assert by_name["refused"].to_json()["error"].startswith("unreachable")
    order = [name for name, _ in seen]
    assert order.index("healthy") < order.index("hangs")
    assert order.index("healthy") < order.index("slow")
    healthy_at = dict(seen)["healthy"]
    assert healthy_at < 1.5  # delivered before the dead hosts time out
    assert max(at for _, at in seen) < 1.5 + 3  # the host timeout bounds everything


def test_start_service(emulator: WinRMEmulator) -> None:
    host = Host.sensor("sensor01")
    host.set_service("AATPSensor", "Stopped")
    host.start_behaviour["AATPSensorUpdater"] = "fail"
    host.set_service("AATPSensorUpdater", "Stopped")
    _, settings = one(emulator, host)
    started = start_service(settings, "sensor01", "AATPSensor")  # type: ignore[arg-type]
    assert (started.before, started.after, started.error, started.running) == (
        "Stopped",
        "Running",
        None,
        True,
    )
    assert host.service_state("AATPSensor") == "Running"
    failed = start_service(settings, "sensor01", "AATPSensorUpdater")  # type: ignore[arg-type]
    assert failed.after == "Stopped"
    assert failed.error
    assert "cannot be started" in failed.error
    host.set_service("AATPSensor", None)
    missing = start_service(settings, "sensor01", "AATPSensor")  # type: ignore[arg-type]
    assert missing.after == NOT_INSTALLED
    assert not missing.running
    with pytest.raises(ConfigError, match="not one of its services"):
        start_service(settings, "sensor01", "Spooler")  # type: ignore[arg-type]
    host.set_fault("http401")
    denied = start_service(settings, "sensor01", "AATPSensor")  # type: ignore[arg-type]
    assert denied.failure is not None
    assert denied.failure.kind is FailureKind.ACCESS_DENIED


def test_missing_password_stops_before_contacting_anyone(
    emulator: WinRMEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    host, settings = one(emulator, Host.sensor("sensor01"))
    monkeypatch.delenv("ATP_BOT_TEST_WINRM_PASSWORD")
    with pytest.raises(ConfigError, match="ATP_BOT_TEST_WINRM_PASSWORD is not set"):
        check_sensors(settings)  # type: ignore[arg-type]
    assert host.counters.requests == 0


def test_unknown_sensor_name_is_a_configuration_error(emulator: WinRMEmulator) -> None:
    _, settings = one(emulator, Host.sensor("sensor01"))
    with pytest.raises(ConfigError, match="no sensor named 'nope'"):
        check_sensors(settings, ["nope"])  # type: ignore[arg-type]


def test_overrides_per_sensor(emulator: WinRMEmulator) -> None:
    host = Host.sensor("custom")
    host.set_service("MyService", "Running")
    host.append_log(log_line(NOW, "LDAP bind failed: 49"), path="D:\\Sensor\\Logs\\custom.log")
    endpoint = emulator.add_host(host)
    sensor = {
        "name": "custom",
        "endpoint": endpoint,
        "services": ["MyService"],
        "log_dir": "D:\\Sensor\\Logs",
        "error_log": "custom.log",
        "credential_error_patterns": ["LDAP bind failed"],
    }
    (result,) = check_sensors(make_settings([sensor]))
    assert [s.name for s in result.services] == ["MyService"]
    assert result.credential_errors is not None
    assert result.credential_errors.count == 1


def test_missing_log_is_reported(emulator: WinRMEmulator) -> None:
    host = Host.sensor("sensor01")
    host.files.clear()
    _, settings = one(emulator, host)
    (result,) = check_sensors(settings)  # type: ignore[arg-type]
    assert result.reachable
    assert not result.healthy
    assert result.log_error
    assert result.log_error.startswith("error log not found")


def test_canary_password_never_logged(
    emulator: WinRMEmulator, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    good, settings = one(emulator, Host.sensor("sensor01"))
    bad = Host.sensor("sensor02")
    bad.fault = "http401"
    endpoint = emulator.add_host(bad)
    settings = make_settings(
        [
            {"name": "sensor01", "endpoint": emulator.endpoint("sensor01")},
            {"name": "sensor02", "endpoint": endpoint},
        ]
    )
    results = check_sensors(settings)
    start_service(settings, "sensor02", "AATPSensor")
    text = caplog.text + "".join(r.getMessage() for r in caplog.records) + str(results)
    text += str([r.to_json() for r in results])
    out, err = capsys.readouterr()
    assert CANARY not in text + out + err
    assert good.counters.requests > 0


def test_time_window_reaches_into_the_archived_log(emulator: WinRMEmulator) -> None:
    host, settings = one(emulator, Host.sensor("sensor01"))
    host.append_log(log_line(NOW - timedelta(hours=3), f"too old {CRED}"))
    host.append_log(log_line(NOW - timedelta(minutes=20), f"before rotation {CRED}"))
    time.sleep(0.01)
    host.rotate_log()
    host.append_log(log_line(NOW - timedelta(minutes=10), f"after rotation {CRED}"))
    (result,) = check_sensors(settings, since=NOW - timedelta(hours=1))  # type: ignore[arg-type]
    errors = result.credential_errors
    assert errors is not None
    assert errors.count == 2
    assert errors.sample is not None
    assert "after rotation" in errors.sample


def test_remote_shells_are_closed_after_timeouts_and_failures(emulator: WinRMEmulator) -> None:
    """A check that times out or fails still closes its shell (after its result, within its own
    budget), so shells never pile up to WinRM's MaxShellsPerUser (after which the sensor would refuse
    every check)."""
    host = Host.sensor("sensor01")
    host.max_shells_per_user = 1
    host.set_fault("timeout")  # the script never finishes
    _, settings = one(emulator, host, checks={"host_timeout": 1.5})
    for _ in range(2):
        (result,) = check_sensors(settings)  # type: ignore[arg-type]
        assert result.failure is not None and result.failure.kind is FailureKind.TIMEOUT
        wait_for_shell_closes()
        assert emulator.open_shells("sensor01") == 0
    host.set_fault(None)
    host.output_padding = MAX_OUTPUT_BYTES  # over the cap with the result itself
    (flooded,) = check_sensors(settings)  # type: ignore[arg-type]
    assert flooded.failure == Failure(
        FailureKind.SCRIPT_ERROR, "the sensor sent more than 1024 KiB of output; the check was stopped"
    )
    wait_for_shell_closes()
    assert emulator.open_shells("sensor01") == 0
    host.output_padding = 0
    (healthy,) = check_sensors(settings)  # type: ignore[arg-type]
    assert healthy.healthy
    wait_for_shell_closes()  # a healthy run's Delete goes after its result
    assert emulator.open_shells("sensor01") == 0


def test_powershell_errors_are_read_with_a_bounded_scan() -> None:
    record = '<S S="Error">Cannot find path &apos;C:\\x&apos;_x000D__x000A_</S>'
    many = ("#< CLIXML\r\n<Objs>" + record * 10_000 + "</Objs>").encode()
    text = clixml_text(many)
    assert text.startswith("Cannot find path 'C:\\x'\r\nCannot find")
    assert len(text) <= MAX_ERROR_TEXT
    unclosed = ("#< CLIXML\r\n" + '<S S="Error">' * 100_000).encode()
    assert clixml_text(unclosed) == ""
    assert clixml_text(b"plain failure\r\n") == "plain failure"


def test_check_lists_a_sensor_without_account_once(
    emulator: WinRMEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A sensor that names no account belongs to every account, yet `atp-bot check` checks and lists it
    once, however many accounts there are."""
    sensors = [{"name": "s1", "endpoint": emulator.add_host(Host.sensor("s1"))}]
    more = "".join(
        f'\n[[accounts]]\nid = "{a}"\nusername = "svc@{a}.test"\ndomain_controllers = ["ldaps://dc"]\n'
        for a in ("fabrikam", "tailspin")
    )
    config = tmp_path / "atp-bot.toml"
    config.write_text(settings_toml(sensors) + more, encoding="utf-8")
    assert main(["--config", str(config), "check", "--json"]) == 0
    assert [d["name"] for d in json.loads(capsys.readouterr().out)] == ["s1"]
    assert main(["--config", str(config), "check"]) == 0
    *table, summary = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in table] == ["SENSOR", "s1"]
    assert summary.startswith("1 of 1 ok")
    assert emulator.host("s1").counters.scripts == 2


def test_one_oversized_response_is_refused_before_it_is_read(emulator: WinRMEmulator) -> None:
    """An endpoint that ignores pywinrm's MaxEnvelopeSize and sends megabytes in one answer is stopped
    by the answer's Content-Length; the shell is still closed."""
    host = Host.sensor("sensor01")
    host.output_padding, host.envelope_limit = MAX_RESPONSE_BYTES, 4 * MAX_RESPONSE_BYTES
    _, settings = one(emulator, host)
    (result,) = check_sensors(settings)  # type: ignore[arg-type]
    assert result.failure is not None and result.failure.kind is FailureKind.SCRIPT_ERROR
    assert result.failure.detail.endswith("KiB at once); the check was stopped")
    wait_for_shell_closes()
    assert emulator.open_shells("sensor01") == 0
