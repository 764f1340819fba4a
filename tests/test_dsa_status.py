"""`atp-bot dsa status`: which directory service accounts classic sensors still use, and which can go
(msal/requests against the Graph emulator, the real CLI)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.cli import main
from lab.graph import SENSORS_PATH, SENSORS_PERMISSION, GraphEmulator
from tests.monitor_tools import toml_str
from tests.test_sensor_inventory import GRAPH_SECRET, graph_toml

UNIFIED = "3.0.1234.0"
CLASSIC = "2.250.18972.56743"
ACCOUNTS = (
    '[[accounts]]\nid = "svc"\nusername = "svc-atp@contoso.test"\ndomain_controllers = ["ldaps://127.0.0.1:1"]\n'
    '[[accounts]]\nid = "fab"\nkind = "gmsa"\nusername = "mdi-gmsa$"\ndomain = "fabrikam.test"\n'
    'lookup_username = "FABRIKAM\\\\reader"\nlookup_password_env = "ATP_BOT_TEST_LOOKUP"\n'
    'domain_controllers = ["ldaps://127.0.0.1:1"]\n'
)
FIELDS = ["account", "domains", "classic_sensors", "unified_sensors", "verdict", "next_step"]


@pytest.fixture
def graph(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[GraphEmulator]:
    monkeypatch.setenv("ATP_BOT_TEST_GRAPH_SECRET", GRAPH_SECRET)
    with GraphEmulator(tmp_path / "graph", client_secret=GRAPH_SECRET, page_size=2) as emulator:
        yield emulator


def config(tmp_path: Path, graph: GraphEmulator, *, discover: bool = True) -> str:
    path = tmp_path / "atp-bot.toml"
    text = f"state_dir = {toml_str(tmp_path / 'state')}\n" + ACCOUNTS + graph_toml(graph, discover=discover)
    path.write_text(text, encoding="utf-8")
    return str(path)


def migrating_fleet(graph: GraphEmulator) -> None:
    """contoso.test: a classic DC, a classic AD FS server, a unified DC; fabrikam.test: unified only."""
    graph.add_sensor("DC1", version=CLASSIC)
    graph.add_sensor("ADFS1", sensor_type="adfsIntegrated", version=CLASSIC)
    graph.add_sensor("DC2", version=UNIFIED)
    graph.add_sensor("FDC1", domain="fabrikam.test", version=UNIFIED)
    graph.add_sensor("FCS1", domain="fabrikam.test", sensor_type="adcsIntegrated", version=UNIFIED)


def statuses(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, dict[str, Any]]]:
    code = main(list(argv))
    answer = json.loads(capsys.readouterr().out)
    assert list(answer) == ["accounts"]
    for entry in answer["accounts"]:
        assert list(entry) == FIELDS
    return code, {entry["account"]: entry for entry in answer["accounts"]}


def test_json_tells_each_account_its_classic_and_unified_sensors_and_verdict(
    tmp_path: Path, graph: GraphEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    migrating_fleet(graph)
    code, found = statuses(capsys, "--config", config(tmp_path, graph), "dsa", "status", "--json")
    assert code == 0
    svc, fab = found["svc"], found["fab"]
    assert (svc["domains"], svc["classic_sensors"], svc["unified_sensors"]) == (
        ["contoso.test"],
        ["DC1", "ADFS1"],
        ["DC2"],
    )
    assert svc["verdict"] == "needed"
    step = svc["next_step"]
    assert "domain controller DC1" in step and "AD FS server ADFS1" in step
    assert "Windows Server 2019" in step and "Windows Server 2016" in step and "need v2" in step
    assert (fab["classic_sensors"], fab["unified_sensors"]) == ([], ["FDC1", "FCS1"])
    assert fab["verdict"] == "removable"
    assert "Settings > Identities > Directory service accounts" in fab["next_step"]
    assert "disable the AD account" in fab["next_step"]


def test_text_names_the_servers_verdict_and_next_step(
    tmp_path: Path, graph: GraphEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    migrating_fleet(graph)
    assert main(["--config", config(tmp_path, graph), "dsa", "status"]) == 0
    out = capsys.readouterr().out
    assert "svc (contoso.test): needed\n  classic sensors (use it): DC1, ADFS1\n  unified sensors: DC2" in out
    assert "fab (fabrikam.test): removable\n  classic sensors (use it): -\n  unified sensors: FDC1, FCS1" in (
        out
    )
    assert out.count("next step: ") == 2


def test_account_option_shows_one_account_and_refuses_an_unknown_one(
    tmp_path: Path, graph: GraphEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    migrating_fleet(graph)
    path = config(tmp_path, graph)
    code, found = statuses(capsys, "--config", path, "dsa", "status", "--account", "fab", "--json")
    assert (code, list(found), found["fab"]["verdict"]) == (0, ["fab"], "removable")
    before = sum(1 for r in graph.records if r.path == SENSORS_PATH)
    assert main(["--config", path, "dsa", "status", "--account", "nope"]) == 2
    assert "no account with id 'nope'" in capsys.readouterr().err
    assert sum(1 for r in graph.records if r.path == SENSORS_PATH) == before  # Graph not asked


def test_graph_unreadable_is_unknown_and_exit_3(
    tmp_path: Path, graph: GraphEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    migrating_fleet(graph)
    graph.withhold_permission(SENSORS_PERMISSION)
    code = main(["--config", config(tmp_path, graph), "dsa", "status", "--json"])
    captured = capsys.readouterr()
    found = {e["account"]: e for e in json.loads(captured.out)["accounts"]}
    assert code == 3
    assert {e["verdict"] for e in found.values()} == {"unknown"}
    assert "could not be read" in found["svc"]["next_step"]
    assert SENSORS_PERMISSION in captured.err
    assert GRAPH_SECRET not in captured.out + captured.err


def test_without_graph_every_verdict_is_unknown(
    tmp_path: Path, graph: GraphEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    """`[[sensors]]` entries say nothing of their generation: never guessed as unified."""
    migrating_fleet(graph)
    path = config(tmp_path, graph, discover=False)
    Path(path).write_text(
        Path(path).read_text(encoding="utf-8")
        + '[winrm]\nusername = "FABRIKAM\\\\checker"\npassword_env = "ATP_BOT_TEST_WINRM"\n'
        + '[[sensors]]\nname = "dc9"\nendpoint = "https://dc9.fabrikam.test:5986/wsman"\n',
        encoding="utf-8",
    )
    code, found = statuses(capsys, "--config", path, "dsa", "status", "--json")
    assert code == 3
    assert {e["verdict"] for e in found.values()} == {"unknown"}
    assert "discover_sensors" in found["fab"]["next_step"]
    assert not any(r.path == SENSORS_PATH for r in graph.records)


def test_a_sensor_whose_generation_graph_does_not_tell_is_never_counted_as_unified(
    tmp_path: Path, graph: GraphEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    graph.add_sensor("FDC1", domain="fabrikam.test", version=UNIFIED)
    graph.add_sensor("FDC2", domain="fabrikam.test", version="")
    code, found = statuses(capsys, "--config", config(tmp_path, graph), "dsa", "status", "--json")
    assert code == 3
    assert (found["fab"]["verdict"], found["fab"]["unified_sensors"]) == ("unknown", ["FDC1"])
    assert "FDC2" in found["fab"]["next_step"]
    assert found["svc"]["verdict"] == "unknown"  # no sensor at all in contoso.test


def test_a_sensor_graph_places_in_the_domain_under_a_foreign_name_keeps_the_verdict_unknown(
    tmp_path: Path, graph: GraphEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    """The fleet counts such a sensor for no account's checks; for the retirement it is not ignored."""
    graph.add_sensor("FDC1", domain="fabrikam.test", version=UNIFIED)
    graph.add_sensor("FDC9", domain="fabrikam.test", version=CLASSIC, dns_names=("fdc9.evil.example",))
    code, found = statuses(capsys, "--config", config(tmp_path, graph), "dsa", "status", "--json")
    assert (code, found["fab"]["verdict"]) == (3, "unknown")
    assert "FDC9" in found["fab"]["next_step"]
