"""`/atp dsa` through the Slack emulator (slack_bolt, slack_sdk) and the Graph emulator (msal)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.graph import SENSORS_PATH, SENSORS_PERMISSION, GraphEmulator
from tests.slack_lab import running_lab, wait_for
from tests.test_sensor_inventory import GRAPH_SECRET
from tests.test_sensor_inventory_slack import graph_config, listing

UNIFIED = "3.0.1234.0"


@pytest.fixture
def graph(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[GraphEmulator]:
    monkeypatch.setenv("ATP_BOT_TEST_GRAPH_SECRET", GRAPH_SECRET)
    with GraphEmulator(tmp_path / "graph", client_secret=GRAPH_SECRET, page_size=2) as emulator:
        yield emulator


def two_accounts(graph: GraphEmulator) -> dict[str, Any]:
    accounts = [
        {"id": "corp", "username": "svc@corp.test", "domain_controllers": ["ldaps://dc1"]},
        {"id": "fab", "username": "svc@fabrikam.test", "domain_controllers": ["ldaps://dc1"]},
    ]
    return {**graph_config(graph), "accounts": accounts}


def test_atp_dsa_shows_each_account_its_classic_sensors_and_verdict(graph: GraphEmulator) -> None:
    graph.add_sensor("dc1", domain="corp.test")
    graph.add_sensor(
        "adfs-<b>", domain="corp.test", sensor_type="adfsIntegrated", dns_names=("adfs1.corp.test",)
    )
    graph.add_sensor("dc2", domain="corp.test", version=UNIFIED)
    graph.add_sensor("fdc1", domain="fabrikam.test", version=UNIFIED)
    with running_lab("http", config=two_accounts(graph)) as lab:
        ack = lab.emulator.slash_command("dsa")
        assert "Reading the sensors" in ack.text
        answer = listing(lab, "*Directory service accounts*: 2")
        assert "1 needed, 1 removable, 0 unknown" in answer["text"]
        corp, fab = (block["text"]["text"] for block in answer["blocks"][1:3])
        assert "*corp* (corp.test): *needed*" in corp
        assert "Classic sensors (use it): dc1, adfs-&lt;b&gt;" in corp and "Unified sensors: dc2" in corp
        assert "Windows Server 2019" in corp
        assert "*fab* (fabrikam.test): *removable*" in fab and "Directory service accounts" in fab
        assert "<b>" not in json.dumps(answer["blocks"])  # Graph's names are escaped

        lab.emulator.slash_command("dsa fab")
        one = listing(lab, "*Directory service accounts*: 1")
        assert "*fab*" in one["blocks"][1]["text"]["text"]
        unknown = lab.emulator.slash_command("dsa nope")
        assert "no account with id" in unknown.text
    rows = [r for r in lab.audit.records if r.action == "listing"]
    assert [r.detail for r in rows if r.outcome == "ok"] == [
        "directory service accounts shown: corp needed, fab removable",
        "directory service accounts shown: fab removable",
    ]


def test_atp_dsa_is_unknown_when_graph_is_unreadable(graph: GraphEmulator) -> None:
    graph.add_sensor("fdc1", domain="fabrikam.test", version=UNIFIED)
    graph.withhold_permission(SENSORS_PERMISSION)
    with running_lab("http", config=two_accounts(graph)) as lab:
        lab.emulator.slash_command("dsa")
        answer = listing(lab, "*Directory service accounts*: 2")
        assert "0 needed, 0 removable, 2 unknown" in answer["text"]
        assert "could not be read" in json.dumps(answer["blocks"])
        wait_for(lambda: any(r.path == SENSORS_PATH for r in graph.records) or None, timeout=5)
