"""Classic and unified sensors over WinRM (pywinrm against the emulator) beside Graph's inventory."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.cli import main
from lab.graph import GraphEmulator
from lab.winrm.model import Host
from lab.winrm.server import WinRMEmulator
from tests.test_sensor_inventory import GRAPH_SECRET, graph_toml
from tests.winrm_lab import CANARY, settings_toml

UNIFIED = "3.0.1234.0"


@pytest.fixture
def graph(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[GraphEmulator]:
    monkeypatch.setenv("ATP_BOT_TEST_GRAPH_SECRET", GRAPH_SECRET)
    with GraphEmulator(tmp_path / "graph", client_secret=GRAPH_SECRET, page_size=2) as emulator:
        yield emulator


def write_config(tmp_path: Path, emulator: WinRMEmulator, names: list[str], extra: str = "") -> Path:
    sensors = [{"name": n, "endpoint": emulator.endpoint(n), "kind": emulator.host(n).kind} for n in names]
    path = tmp_path / "atp-bot.toml"
    path.write_text(settings_toml(sensors, checks={"host_timeout": 10}) + extra, encoding="utf-8")
    return path


def sensors_json(
    config: Path, capsys: pytest.CaptureFixture[str], expected_exit: int
) -> dict[str, dict[str, Any]]:
    assert main(["--config", str(config), "sensors", "--json"]) == expected_exit
    return {row["name"]: row for row in json.loads(capsys.readouterr().out)}


def test_a_unified_sensor_is_never_service_not_installed(
    emulator: WinRMEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    emulator.add_host(Host.sensor("dc1"))
    emulator.add_host(Host.unified("dc2"))
    config = write_config(tmp_path, emulator, ["dc1", "dc2"])

    assert main(["--config", str(config), "check"]) == 0
    out = capsys.readouterr().out
    assert "not installed" not in out
    assert "SenseIdentity running (unified sensor" in out

    rows = sensors_json(config, capsys, 0)  # without Graph: the generation comes from the host
    assert (rows["dc1"]["generation"], rows["dc1"]["uses_dsa"]) == ("2", True)
    assert (rows["dc2"]["generation"], rows["dc2"]["uses_dsa"]) == ("3", False)
    assert rows["dc2"]["verdict"] == "healthy" and rows["dc2"]["problems"] == []
    assert rows["dc2"]["source"] == "config" and rows["dc2"]["winrm"] is True


def test_a_host_without_either_sign_is_unknown_never_guessed(
    emulator: WinRMEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bare = Host(name="dc9")  # neither the AATPSensor service nor the SenseIdentity process
    emulator.add_host(bare)
    config = write_config(tmp_path, emulator, ["dc9"])
    rows = sensors_json(config, capsys, 1)
    assert (rows["dc9"]["generation"], rows["dc9"]["uses_dsa"]) == ("unknown", None)
    assert "service AATPSensor is not installed" in rows["dc9"]["problems"]


def test_the_mixed_fleet_through_graph_and_winrm(
    emulator: WinRMEmulator,
    graph: GraphEmulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    graph.add_sensor("DC1")
    graph.add_sensor("DC2", version=UNIFIED)
    graph.add_sensor("DC3", deployment_status="startFailure", health_status="notHealthyHigh")
    graph.add_sensor("DC4", version=UNIFIED, deployment_status="disconnected")
    graph.add_sensor("DC6", version=UNIFIED)
    emulator.add_host(Host.sensor("dc1"))
    emulator.add_host(Host.unified("dc2"))
    emulator.add_host(Host.sensor("ata1", "ata"))  # only in config
    emulator.add_host(Host.sensor("dc6"))  # Graph says unified, the host lacks SenseIdentity
    emulator.host("dc6").set_service("AATPSensor", None)
    config = write_config(tmp_path, emulator, ["dc1", "dc2", "ata1", "dc6"], graph_toml(graph))

    rows = sensors_json(config, capsys, 1)
    assert [(r["name"], r["source"], r["generation"], r["verdict"]) for r in rows.values()] == [
        ("dc1", "both", "2", "healthy"),
        ("dc2", "both", "3", "healthy"),
        ("DC3", "graph", "2", "attention"),
        ("DC4", "graph", "3", "attention"),
        ("dc6", "both", "3", "attention"),
        ("ata1", "config", "unknown", "healthy"),
    ]
    assert rows["dc6"]["problems"] == ["the SenseIdentity process is not running"]
    assert rows["DC3"]["problems"] == ["health notHealthyHigh", "deployment startFailure"]
    assert rows["DC3"]["winrm"] is False and rows["dc1"]["winrm"] is True
    assert not any("not installed" in p for r in rows.values() for p in r["problems"])


def test_an_unreachable_sensor_exits_3(
    emulator: WinRMEmulator, graph: GraphEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    graph.add_sensor("DC1")
    emulator.add_host(Host.sensor("dc1"))
    emulator.set_fault("dc1", "http500")
    config = write_config(tmp_path, emulator, ["dc1"], graph_toml(graph))
    rows = sensors_json(config, capsys, 3)
    assert rows["dc1"]["verdict"] == "unknown"
    assert rows["dc1"]["problems"][0].startswith("WinRM check failed:")


def test_endpoint_template_gives_discovered_sensors_winrm_checks(
    emulator: WinRMEmulator, graph: GraphEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    emulator.add_host(Host.unified("localhost"))
    port = emulator.endpoint("localhost").rsplit(":", 1)[1].split("/")[0]
    graph.add_sensor("localhost", domain="localhost", version=UNIFIED, dns_names=("localhost",))
    template = f"http://{{dns_name}}:{port}/wsman"
    config = tmp_path / "atp-bot.toml"
    config.write_text(
        settings_toml([], winrm={"endpoint_template": template, "allowed_domains": ["localhost"]})
        + graph_toml(graph),
        "utf-8",
    )
    rows = sensors_json(config, capsys, 0)
    assert rows["localhost"]["winrm"] is True and rows["localhost"]["source"] == "graph"
    assert emulator.host("localhost").counters.scripts == 1
    emulator.host("localhost").processes.clear()
    assert sensors_json(config, capsys, 1)["localhost"]["problems"] == [
        "the SenseIdentity process is not running"
    ]
    assert CANARY not in capsys.readouterr().err


def test_check_shows_graph_beside_winrm(
    emulator: WinRMEmulator, graph: GraphEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    graph.add_sensor("DC1", deployment_status="startFailure", health_status="notHealthyHigh")
    graph.add_sensor("DC2", version=UNIFIED)
    emulator.add_host(Host.sensor("dc1"))
    emulator.add_host(Host(name="dc2"))  # Graph says unified; the host shows no SenseIdentity
    config = write_config(tmp_path, emulator, ["dc1", "dc2"], graph_toml(graph))

    assert main(["--config", str(config), "check", "--json"]) == 1
    results = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert results["dc1"]["healthy"] is True  # the host itself is fine
    assert (results["dc1"]["deployment_status"], results["dc1"]["verdict"]) == ("startFailure", "attention")
    assert (results["dc2"]["generation"], results["dc2"]["uses_dsa"]) == ("3", False)

    assert main(["--config", str(config), "check"]) == 1
    out = capsys.readouterr().out
    assert "dc1: health notHealthyHigh" in out and "dc1: deployment startFailure" in out
    assert "dc2: the SenseIdentity process is not running" in out
    assert "dc2: service AATPSensor is not installed" not in out


def test_check_checks_the_discovered_sensors_as_the_monitor_does(
    emulator: WinRMEmulator, graph: GraphEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    emulator.add_host(Host.sensor("localhost"))
    port = emulator.endpoint("localhost").rsplit(":", 1)[1].split("/")[0]
    graph.add_sensor("localhost", domain="localhost", dns_names=("localhost",))
    template = f"http://{{dns_name}}:{port}/wsman"
    config = tmp_path / "atp-bot.toml"
    config.write_text(
        settings_toml([], winrm={"endpoint_template": template, "allowed_domains": ["localhost"]})
        + graph_toml(graph),
        "utf-8",
    )
    assert main(["--config", str(config), "check", "--json"]) == 0
    (result,) = json.loads(capsys.readouterr().out)
    assert (result["name"], result["healthy"], result["generation"]) == ("localhost", True, "2")
    assert emulator.host("localhost").counters.scripts == 1
