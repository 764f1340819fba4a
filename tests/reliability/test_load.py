"""Load: 50 people type `/atp status` at once with 500 sensors configured.

A real `atp-bot run` process (Socket Mode; the checks in its worker process) against the Slack emulator
and 500 emulated sensors over WinRM/NTLM. Every request is acknowledged within Slack's 3 seconds, every
requester gets the full report, each sensor is asked once (the requests share one check), and the bot's
memory does not grow from one storm to the next. The figures are measured by `bench/bench_load.py`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.load import WINRM_PASSWORD_ENV, WINRM_USER, BotProcess, load_config, sensor_fleet, status_storm
from lab.slack import SlackEmulator
from lab.winrm.server import WinRMEmulator

SENSORS = 500
REQUESTS = 50
# Each WinRM round trip of an emulated sensor takes this long (a real one runs PowerShell: longer), so the
# checks spread over time as they do in production instead of saturating the CPU all at once.
ROUND_TRIP_SECONDS = 0.05
WINRM_PASSWORD = "Load-W1nRM-secret"
# After the first storm the bot has met every sensor once; a second storm may add little more than noise.
GROWTH_ALLOWED_KIB = 16 * 1024


@pytest.fixture
def fleet() -> Iterator[tuple[WinRMEmulator, list[dict[str, str]]]]:
    with WinRMEmulator(username=WINRM_USER, password=WINRM_PASSWORD) as sensors:
        yield sensors, sensor_fleet(sensors, SENSORS, ROUND_TRIP_SECONDS)


def test_fifty_status_requests_with_500_sensors(
    fleet: tuple[WinRMEmulator, list[dict[str, str]]], tmp_path: Path
) -> None:
    sensors, tables = fleet
    with SlackEmulator() as slack:
        config = load_config(tmp_path / "state", slack, tables)
        with BotProcess(tmp_path, config, slack, {WINRM_PASSWORD_ENV: WINRM_PASSWORD}) as bot:
            peaks = []
            for storm in (1, 2):
                result = status_storm(slack, REQUESTS)
                assert result.late == 0, sorted(result.ack_seconds)[-5:]
                assert len(result.final_texts) == REQUESTS
                incomplete = [
                    t for t in result.final_texts.values() if f"All {SENSORS} sensor(s) are running" not in t
                ]
                assert not incomplete, incomplete[0][:2000]
                scripts = [h.counters.scripts for h in sensors.hosts.values()]
                assert (
                    max(scripts) <= storm * 2
                )  # shared: at most one check per storm (two if it straddled one)
                peaks.append(bot.memory().peak_kib)
            assert peaks[1] - peaks[0] <= GROWTH_ALLOWED_KIB, peaks
