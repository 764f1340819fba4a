"""The monitor and the unified sensor (3.x): no AATP service, so nothing to alert about for its absence
(pywinrm against the WinRM emulator, the real monitor cycle)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.monitor.cycle import run_monitor_cycle
from lab.winrm.model import Host
from lab.winrm.server import WinRMEmulator
from tests.monitor_tools import (
    WINRM_PASSWORD,
    WINRM_USER,
    Clock,
    RecordingNotifier,
    make_runtime,
    monitor_settings,
)


@pytest.fixture
def fleet(monkeypatch: pytest.MonkeyPatch) -> Iterator[WinRMEmulator]:
    monkeypatch.setenv("ATP_BOT_TEST_WINRM", WINRM_PASSWORD)
    monkeypatch.delenv("ATP_BOT_STORE_KEY", raising=False)
    with WinRMEmulator(username=WINRM_USER, password=WINRM_PASSWORD) as emulator:
        emulator.add_host(Host.sensor("sensor01"))
        emulator.add_host(Host.unified("sensor02"))
        yield emulator


def test_a_unified_sensor_opens_no_incident(fleet: WinRMEmulator, tmp_path: Path) -> None:
    notifier = RecordingNotifier()
    runtime = make_runtime(monitor_settings(tmp_path, fleet), notifier, Clock())
    assert run_monitor_cycle(runtime).opened == ()
    assert notifier.calls == []
    fleet.host("sensor02").processes.clear()  # neither sign: reported as before
    assert run_monitor_cycle(runtime).opened == ("svc",)
