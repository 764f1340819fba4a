"""Ctrl-C in a command that waits on peers: it stops at once, says so, exits 130 (the real CLI, a process)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from lab.winrm.model import Host
from lab.winrm.server import WinRMEmulator
from tests.slack_lab import wait_for
from tests.winrm_lab import settings_toml

STOPPED_WITHIN = 10  # seconds: generous; the hung sensor would hold the command for host_timeout (10 min)


def start_check(tmp_path: Path, emulator: WinRMEmulator) -> subprocess.Popen[str]:
    hung = Host.sensor("hung")
    hung.fault = "trickle"  # one byte a second: the check would wait for its deadline
    sensors = [{"name": "hung", "endpoint": emulator.add_host(hung)}]
    config = tmp_path / "atp-bot.toml"
    config.write_text(settings_toml(sensors, checks={"host_timeout": 600}), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "ATP_BOT_CONFIG"}
    return subprocess.Popen(
        [sys.executable, "-m", "bot", "--config", str(config), "check"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def interrupt(process: subprocess.Popen[str]) -> tuple[int, str, str, float]:
    """SIGINT, as Ctrl-C sends it; the exit code, the output and how long the process took to end."""
    sent = time.monotonic()
    process.send_signal(signal.SIGINT)
    try:
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return process.returncode, out, err, time.monotonic() - sent


def test_ctrl_c_during_check_stops_at_once_abandoning_the_hung_sensor(
    emulator: WinRMEmulator, tmp_path: Path
) -> None:
    process = start_check(tmp_path, emulator)
    wait_for(lambda: emulator.hosts["hung"].counters.requests, timeout=30)  # the check is waiting on it
    time.sleep(0.5)
    code, out, err, took = interrupt(process)
    assert code == 130, out + err
    assert "atp-bot: interrupted, stopping" in err.splitlines()
    assert err.count("interrupted, stopping") == 1
    assert "Traceback" not in err
    assert took < STOPPED_WITHIN
