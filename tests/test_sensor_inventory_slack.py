"""`/atp sensors` through the Slack emulator (slack_bolt, slack_sdk) and the Graph emulator (msal)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from bot.change import PasswordChanges, open_changes
from bot.config import Settings
from bot.sensors import CheckWorkers, SensorResult
from bot.sensors.workers import LogSetup
from bot.store.embedded import init_embedded_store
from lab.graph import SENSORS_PATH, SENSORS_PERMISSION, GraphEmulator
from lab.winrm.server import WinRMEmulator
from tests.conftest import sensor_config
from tests.slack_lab import Lab, running_lab, wait_for
from tests.test_sensor_inventory import GRAPH_SECRET


@pytest.fixture
def graph(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[GraphEmulator]:
    monkeypatch.setenv("ATP_BOT_TEST_GRAPH_SECRET", GRAPH_SECRET)
    with GraphEmulator(tmp_path / "graph", client_secret=GRAPH_SECRET, page_size=2) as emulator:
        yield emulator


def graph_config(graph: GraphEmulator) -> dict[str, Any]:
    return {
        "graph": {
            "discover_sensors": True,
            "tenant_id": graph.tenant_id,
            "client_id": graph.client_id,
            "client_secret_env": "ATP_BOT_TEST_GRAPH_SECRET",
            "authority_url": graph.authority_url,
            "graph_url": graph.graph_url,
            "ca_file": str(graph.tls.ca_file),
        }
    }


def listing(lab: Lab, marker: str) -> dict[str, Any]:
    def shown() -> dict[str, Any] | None:
        answers = [c.args for c in lab.emulator.calls("response_url")]
        return next((a for a in reversed(answers) if marker in str(a.get("text", ""))), None)

    return wait_for(shown, timeout=20)


def test_atp_sensors_shows_a_compact_table_unhealthy_first(graph: GraphEmulator) -> None:
    graph.add_sensor("dc-ok")
    graph.add_sensor("dc-unified", version="3.0.1234.0")
    graph.add_sensor("dc-broken", deployment_status="startFailure", health_status="notHealthyHigh")
    graph.add_sensor("dc-<b>", deployment_status="disconnected")
    with running_lab("http", config=graph_config(graph)) as lab:
        ack = lab.emulator.slash_command("sensors")
        assert "Listing the sensors" in ack.text
        answer = listing(lab, "*Sensors*: 4")
        assert "2 need attention" in answer["text"]
        shown = json.dumps(answer["blocks"])
        header, *lines = [
            line for line in answer["blocks"][1]["text"]["text"].strip("`").splitlines() if line
        ]
        assert header.split() == ["SENSOR", "GEN", "DSA", "HEALTH", "DEPLOYMENT"]
        assert [line.split()[1] for line in lines] == ["dc-&lt;b&gt;", "dc-broken", "dc-ok", "dc-unified"]
        assert "no DSA" in lines[3] and "startFailure" in lines[1]
        assert "<b>" not in shown  # Graph's text is escaped
        for _ in range(3):
            lab.emulator.slash_command("sensors contoso.test")
        answered = lambda: [c for c in lab.emulator.calls("response_url") if "*Sensors*" in str(c.args)]  # noqa: E731
        wait_for(lambda: len(answered()) >= 4 or None, timeout=20)
    assert sum(1 for r in graph.records if r.path == SENSORS_PATH) == 2  # one listing (2 pages), cached


def test_atp_sensors_names_the_missing_permission(graph: GraphEmulator) -> None:
    graph.withhold_permission(SENSORS_PERMISSION)
    with running_lab("http", config=graph_config(graph)) as lab:
        lab.emulator.slash_command("sensors")
        answer = listing(lab, "*Sensors*: 0")
        assert SENSORS_PERMISSION in json.dumps(answer["blocks"])
        assert GRAPH_SECRET not in json.dumps(answer)


def test_atp_status_shows_graph_beside_the_checks(
    graph: GraphEmulator, sensors: WinRMEmulator, env: None
) -> None:
    graph.add_sensor(
        "sensor01", domain="corp.test", deployment_status="startFailure", health_status="notHealthyHigh"
    )
    graph.add_sensor("sensor02", domain="corp.test", version="3.0.1234.0")  # the domain of account corp
    graph.add_sensor("elsewhere")  # not checked: not shown
    with running_lab("http", config={**sensor_config(sensors, "corp"), **graph_config(graph)}) as lab:
        lab.emulator.slash_command("status")
        answer = listing(lab, "All 2 sensor(s)")
        assert "sensor01: Graph: health notHealthyHigh; deployment startFailure" in answer["text"]
        assert (
            "sensor02: unified sensor (Graph): does not use the directory service account" in answer["text"]
        )
        assert "elsewhere" not in answer["text"]


def test_atp_sensors_checks_the_hosts_with_the_bots_checker(
    sensors: WinRMEmulator, env: None, tmp_path: Path
) -> None:
    """`/atp sensors` hands its WinRM checks to the bot's checker (in `atp-bot run`, its check worker
    processes): none runs in the bot's own threads."""
    asked: list[list[str]] = []
    workers = CheckWorkers(1, 2, LogSetup(logging.INFO, "text")).start()

    def in_workers(settings: Settings, names: Sequence[str] | None = None, **kw: Any) -> list[SensorResult]:
        asked.append([s.name for s in settings.sensors])
        return workers.check_sensors(settings, names, **kw)

    def changes(settings: Settings) -> PasswordChanges:
        init_embedded_store(settings)
        return open_changes(settings, in_workers)

    config = {**sensor_config(sensors, "corp"), "state_dir": str(tmp_path / "state")}
    with running_lab("http", config=config, changes=changes) as lab:
        try:
            lab.emulator.slash_command("sensors")
            answer = listing(lab, "*Sensors*: 2")
        finally:
            workers.close()
    assert "2 healthy" in answer["text"]
    assert asked == [["sensor01", "sensor02"]]
