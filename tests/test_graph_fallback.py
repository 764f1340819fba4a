"""When Graph cannot be used (whatever it sent), the configured `[[sensors]]` are still checked and a line
says that Graph could not be read: `atp-bot sensors`, `atp-bot check`, the monitor cycle and a change's
follow-up checks (msal/requests against the Graph emulator's hostile answers, pywinrm against the WinRM
emulator)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.change import ChangeProgress
from bot.cli import main
from bot.fleet import GraphFleet
from bot.monitor.cycle import run_monitor_cycle
from lab.graph import SENSORS_PATH, GraphEmulator
from lab.graph_hostile import HostileAnswer
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
from tests.test_sensor_inventory import GRAPH_SECRET, graph_toml
from tests.test_sensor_inventory_winrm import write_config
from tests.winrm_lab import CANARY

UNREAD = "Graph's sensor list could not be read ("
CHECKED_ANYWAY = "the configured [[sensors]] are checked"


@pytest.fixture
def graph(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[GraphEmulator]:
    monkeypatch.setenv("ATP_BOT_TEST_GRAPH_SECRET", GRAPH_SECRET)
    with GraphEmulator(tmp_path / "graph", client_secret=GRAPH_SECRET, page_size=2) as emulator:
        emulator.add_sensor("DC9", deployment_status="startFailure")  # Graph's own; lost with Graph
        yield emulator


def configured_dc1(emulator: WinRMEmulator, graph: GraphEmulator, tmp_path: Path, *, stopped: bool) -> Path:
    emulator.add_host(Host.sensor("dc1"))
    if stopped:
        emulator.host("dc1").set_service("AATPSensor", "Stopped")
    return write_config(tmp_path, emulator, ["dc1"], graph_toml(graph))


@pytest.mark.parametrize("answer", ["deep_json", "huge_body", "wrong_shape"])
def test_atp_bot_sensors_checks_the_configured_sensors_without_graph(
    emulator: WinRMEmulator,
    graph: GraphEmulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    answer: HostileAnswer,
) -> None:
    config = configured_dc1(emulator, graph, tmp_path, stopped=False)
    graph.answer_next(SENSORS_PATH, answer)
    assert main(["--config", str(config), "sensors", "--json"]) == 3  # nothing wrong found, Graph unread
    captured = capsys.readouterr()
    (row,) = json.loads(captured.out)
    assert (row["name"], row["source"], row["verdict"]) == ("dc1", "config", "healthy")
    assert emulator.host("dc1").counters.scripts == 1
    (line,) = [line for line in captured.err.splitlines() if line.startswith(f"atp-bot: {UNREAD}")]
    assert line.endswith(CHECKED_ANYWAY)
    assert "something went wrong" not in captured.err and CANARY not in captured.out + captured.err


def test_a_problem_found_without_graph_is_exit_1(
    emulator: WinRMEmulator, graph: GraphEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A script looking for 1 must not miss a stopped sensor because Graph could not be read."""
    config = configured_dc1(emulator, graph, tmp_path, stopped=True)
    graph.answer_next(SENSORS_PATH, "deep_json")
    assert main(["--config", str(config), "sensors"]) == 1
    captured = capsys.readouterr()
    assert "dc1: service AATPSensor is Stopped" in captured.out and UNREAD in captured.err

    graph.answer_next(SENSORS_PATH, "deep_json")
    assert main(["--config", str(config), "check"]) == 1
    captured = capsys.readouterr()
    assert "AATPSensor" in captured.out and UNREAD in captured.err


def test_atp_bot_check_checks_the_configured_sensors_without_graph(
    emulator: WinRMEmulator, graph: GraphEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = configured_dc1(emulator, graph, tmp_path, stopped=False)
    graph.answer_next(SENSORS_PATH, "deep_json")
    assert main(["--config", str(config), "check", "--json"]) == 3
    captured = capsys.readouterr()
    (result,) = json.loads(captured.out)
    assert (result["name"], result["healthy"]) == ("dc1", True)
    assert (
        f"{UNREAD}Graph's answer for /security/identities/sensors is JSON nested too deeply" in captured.err
    )


class RecordingProgress(ChangeProgress):
    def __init__(self) -> None:
        self.lines: list[str] = []

    def graph_unread(self, line: str) -> None:
        self.lines.append(line)


@pytest.fixture
def winrm(monkeypatch: pytest.MonkeyPatch) -> Iterator[WinRMEmulator]:
    monkeypatch.setenv("ATP_BOT_TEST_WINRM", WINRM_PASSWORD)
    monkeypatch.delenv("ATP_BOT_STORE_KEY", raising=False)
    with WinRMEmulator(username=WINRM_USER, password=WINRM_PASSWORD) as emulator:
        emulator.add_host(Host.sensor("dc1"))
        yield emulator


def test_the_monitor_and_the_follow_up_checks_check_the_configured_sensors_without_graph(
    tmp_path: Path, graph: GraphEmulator, winrm: WinRMEmulator
) -> None:
    settings = monitor_settings(tmp_path, winrm, extra=graph_toml(graph))
    runtime = make_runtime(settings, RecordingNotifier(), Clock())
    runtime.changes.fleet = GraphFleet(settings, cache_seconds=0)

    graph.answer_next(SENSORS_PATH, "deep_json")
    cycle = run_monitor_cycle(runtime)
    assert cycle.fleet_error is not None and "nested too deeply" in cycle.fleet_error
    assert [r.name for r in cycle.results] == ["dc1"]

    graph.answer_next(SENSORS_PATH, "malformed_json")
    progress = RecordingProgress()
    results = runtime.changes.follow_up_checks("svc", None, "test", progress)
    assert [(r.name, r.healthy) for r in results] == [("dc1", True)]
    (line,) = progress.lines
    assert line.startswith(UNREAD + "Graph returned something that is not JSON") and line.endswith(
        CHECKED_ANYWAY
    )
