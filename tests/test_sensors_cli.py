"""`atp-bot check`: table, JSON and exit codes, in-process and once as a real subprocess."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from bot.cli import main
from lab.winrm.model import Host, log_line
from lab.winrm.server import WinRMEmulator
from tests.winrm_lab import CANARY, settings_toml


def write_config(tmp_path: Path, emulator: WinRMEmulator, names: list[str]) -> Path:
    path = tmp_path / "atp-bot.toml"
    sensors = [{"name": n, "endpoint": emulator.endpoint(n)} for n in names]
    path.write_text(settings_toml(sensors, checks={"host_timeout": 3}), encoding="utf-8")
    return path


def test_all_healthy(emulator: WinRMEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    emulator.add_host(Host.sensor("s1"))
    config = write_config(tmp_path, emulator, ["s1"])
    assert main(["--config", str(config), "check"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["SENSOR", "STATUS", "SERVICES", "CREDENTIAL", "ERRORS", "DURATION"]
    assert "s1" in out
    assert "AATPSensor Running" in out


def test_problem_found(emulator: WinRMEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    host = Host.sensor("s1")
    host.set_service("AATPSensor", "Stopped")
    from datetime import UTC, datetime

    host.append_log(log_line(datetime.now(UTC), "The supplied credential is invalid."))
    emulator.add_host(host)
    emulator.add_host(Host.sensor("s2"))
    config = write_config(tmp_path, emulator, ["s1", "s2"])
    assert main(["--config", str(config), "check", "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert [d["name"] for d in data] == ["s1", "s2"]
    assert data[0]["services"] == {"AATPSensor": "Stopped", "AATPSensorUpdater": "Running"}
    assert data[0]["credential_errors"] == 1
    assert data[0]["reachable"] is True
    assert data[1]["credential_errors"] == 0
    assert "error" not in data[1]


def test_unreachable_without_a_problem_is_3(
    emulator: WinRMEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    down = Host.sensor("down")
    down.fault = "refused"
    emulator.add_host(down)
    emulator.add_host(Host.sensor("s1"))
    config = write_config(tmp_path, emulator, ["s1", "down"])
    assert main(["--config", str(config), "check", "--sensor", "down", "--json"]) == 3
    (entry,) = json.loads(capsys.readouterr().out)
    assert entry["reachable"] is False
    assert entry["error"].startswith("unreachable")
    assert main(["--config", str(config), "check"]) == 3
    out = capsys.readouterr().out
    assert "UNREACHABLE" in out
    assert "down: not checked: unreachable" in out  # the problem list names it too
    assert out.splitlines()[-1] == "1 of 2 ok (1 unreachable)"


def test_a_problem_is_1_even_when_another_sensor_is_unreachable(
    emulator: WinRMEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    down = Host.sensor("down")
    down.fault = "refused"
    emulator.add_host(down)
    stopped = Host.sensor("stopped")
    stopped.set_service("AATPSensor", "Stopped")
    emulator.add_host(stopped)
    emulator.add_host(Host.sensor("s1"))
    config = write_config(tmp_path, emulator, ["s1", "stopped", "down"])
    assert main(["--config", str(config), "check"]) == 1
    out = capsys.readouterr().out
    assert "stopped: service AATPSensor is Stopped" in out
    assert out.splitlines()[-1] == "1 of 3 ok (1 with a problem, 1 unreachable)"
    assert "\x1b[" not in out  # no colour when stdout is not a terminal


def test_usage_errors(emulator: WinRMEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    emulator.add_host(Host.sensor("s1"))
    config = write_config(tmp_path, emulator, ["s1"])
    assert main(["--config", str(config), "check", "--sensor", "nope"]) == 2
    assert main(["--config", str(config), "check", "--since", "yesterday"]) == 2
    assert main(["--config", str(config), "check", "--since", "2026-01-01T00:00:00"]) == 2
    err = capsys.readouterr().err
    assert "atp-bot: usage error: no sensor named 'nope'" in err
    assert "atp-bot: usage error: --since" in err
    assert "Traceback" not in err


def test_subprocess(emulator: WinRMEmulator, tmp_path: Path) -> None:
    emulator.add_host(Host.sensor("s1"))
    config = write_config(tmp_path, emulator, ["s1"])
    env = {**os.environ, "ATP_BOT_TEST_WINRM_PASSWORD": CANARY}
    done = subprocess.run(
        [sys.executable, "-m", "bot", "--config", str(config), "-v", "check", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)[0]["healthy"] is True
    assert CANARY not in done.stdout + done.stderr
    assert "DEBUG" in done.stderr  # -v logged at DEBUG, still without the password


def test_product_does_not_import_the_lab() -> None:
    code = (
        "import sys, bot.sensors.checks, bot.cli.check\n"
        "assert not any(m == 'lab' or m.startswith('lab.') for m in sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_progress_on_a_terminal(emulator: WinRMEmulator, tmp_path: Path) -> None:
    emulator.add_host(Host.sensor("s1"))
    config = write_config(tmp_path, emulator, ["s1"])
    leader, follower = pty.openpty()
    env = {**os.environ, "ATP_BOT_TEST_WINRM_PASSWORD": CANARY}
    try:
        done = subprocess.run(
            [sys.executable, "-m", "bot", "--config", str(config), "check"],
            stdout=subprocess.PIPE,
            stderr=follower,
            env=env,
            timeout=60,
            check=False,
        )
        os.close(follower)
        seen = b""
        with contextlib.suppress(OSError):
            while chunk := os.read(leader, 4096):
                seen += chunk
    finally:
        os.close(leader)
    assert done.returncode == 0
    assert b"[1/1] s1: ok" in seen
    assert b"[1/1]" not in done.stdout


def on_terminal(config: Path, env: dict[str, str]) -> tuple[int, bytes]:
    """`atp-bot check` with stdout and stderr on a terminal: its exit code and what the terminal showed."""
    leader, follower = pty.openpty()
    try:
        child = subprocess.Popen(
            [sys.executable, "-m", "bot", "--config", str(config), "check"],
            stdout=follower,
            stderr=follower,
            env=env,
        )
        os.close(follower)
        seen = b""
        with contextlib.suppress(OSError):
            while chunk := os.read(leader, 4096):
                seen += chunk
        return child.wait(timeout=60), seen
    finally:
        os.close(leader)


def test_a_terminal_names_the_sensors_still_pending_and_gets_colour(
    emulator: WinRMEmulator, tmp_path: Path
) -> None:
    emulator.add_host(Host.sensor("s1"))
    slow = Host.sensor("slow")
    slow.set_latency(
        1.5
    )  # each of its WinRM round trips: well past the 3 s after which pending ones are named
    emulator.add_host(slow)
    path = tmp_path / "atp-bot.toml"
    sensors = [{"name": n, "endpoint": emulator.endpoint(n)} for n in ("s1", "slow")]
    path.write_text(settings_toml(sensors, checks={"host_timeout": 30}), encoding="utf-8")
    env = {**os.environ, "ATP_BOT_TEST_WINRM_PASSWORD": CANARY}
    env.pop("NO_COLOR", None)
    code, seen = on_terminal(path, env)
    assert code == 0, seen
    assert b"[1/2] s1: ok; waiting for slow (" in seen
    assert b"\x1b[32mok\x1b[0m" in seen
    assert seen.rstrip().endswith(b"2 of 2 ok")
    code, seen = on_terminal(path, {**env, "NO_COLOR": "1"})
    assert b"\x1b[32m" not in seen
