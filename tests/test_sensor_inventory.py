"""The sensor inventory from Graph (MSAL + requests against the Graph emulator) and `atp-bot sensors`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import requests

from bot.cli import main
from bot.config import Settings, parse_settings
from bot.fleet.inventory import build_rows, generation_of
from bot.fleet.merge import merge_fleet
from bot.graph import GraphError, GraphSensor, GraphSensorSource
from lab.graph import CREDENTIALS_ISSUE, SENSORS_PATH, SENSORS_PERMISSION, GraphEmulator
from tests.monitor_tools import toml_str

GRAPH_SECRET = "Canary-Graph-Secret~7Qv.9_x2"
ROW_FIELDS = {
    "name",
    "dns_name",
    "domain",
    "source",
    "sensor_type",
    "version",
    "generation",
    "uses_dsa",
    "health_status",
    "deployment_status",
    "open_health_issues",
    "winrm",
    "verdict",
    "problems",
}


@pytest.fixture
def graph(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[GraphEmulator]:
    monkeypatch.setenv("ATP_BOT_TEST_GRAPH_SECRET", GRAPH_SECRET)
    monkeypatch.setenv("ATP_BOT_TEST_WINRM", "unused")
    with GraphEmulator(tmp_path / "graph", client_secret=GRAPH_SECRET, page_size=3) as emulator:
        yield emulator


def graph_toml(graph: GraphEmulator, *, discover: bool = True) -> str:
    return (
        "[graph]\n"
        f"discover_sensors = {'true' if discover else 'false'}\n"
        f"tenant_id = {toml_str(graph.tenant_id)}\nclient_id = {toml_str(graph.client_id)}\n"
        'client_secret_env = "ATP_BOT_TEST_GRAPH_SECRET"\n'
        f"authority_url = {toml_str(graph.authority_url)}\ngraph_url = {toml_str(graph.graph_url)}\n"
        f"ca_file = {toml_str(graph.tls.ca_file)}\ntimeout = 10\n"
    )


ACCOUNT = '[[accounts]]\nid = "svc"\nusername = "svc-atp@contoso.test"\ndomain_controllers = ["ldaps://127.0.0.1:1"]\n'


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "atp-bot.toml"
    path.write_text(f"state_dir = {toml_str(tmp_path / 'state')}\n" + ACCOUNT + text, encoding="utf-8")
    return path


def settings_of(tmp_path: Path, text: str) -> Settings:
    return parse_settings(write_config(tmp_path, text).read_text(encoding="utf-8"))


def source_of(tmp_path: Path, graph: GraphEmulator, **kwargs: object) -> GraphSensorSource:
    return GraphSensorSource(settings_of(tmp_path, graph_toml(graph)).graph, **kwargs)  # type: ignore[arg-type]


def sensors_requests(graph: GraphEmulator) -> int:
    return sum(1 for r in graph.records if r.path == SENSORS_PATH)


def mixed_fleet(graph: GraphEmulator) -> dict[str, str]:
    """Classic and unified, healthy and not, every sensor type; ids by name."""
    return {
        "DC1": graph.add_sensor("DC1"),
        "DC2": graph.add_sensor("DC2", version="3.0.1234.0", sensor_type="domainControllerIntegrated"),
        "DC3": graph.add_sensor(
            "DC3", deployment_status="startFailure", health_status="notHealthyHigh", open_issues=1
        ),
        "DC4": graph.add_sensor("DC4", domain="fabrikam.test", deployment_status="disconnected"),
        "ADFS1": graph.add_sensor("ADFS1", sensor_type="adfsIntegrated"),
        "CS1": graph.add_sensor("CS1", sensor_type="domainControllerStandalone", version="2.249.1.1"),
    }


def test_every_sensor_is_read_across_pages_with_only_the_fields_used(
    tmp_path: Path, graph: GraphEmulator
) -> None:
    ids = mixed_fleet(graph)
    graph.add_issue(CREDENTIALS_ISSUE, sensors=("dc3.contoso.test",))
    graph.add_issue("Sensor stopped communicating", sensors=("dc1.contoso.test",), status="closed")
    sensors = source_of(tmp_path, graph).sensors()
    assert [s.display_name for s in sensors] == list(ids)
    assert sensors_requests(graph) == 2  # six sensors, three per page
    dc3 = sensors[2]
    assert dc3.open_health_issues == (CREDENTIALS_ISSUE,)
    assert (dc3.health_status, dc3.deployment_status) == ("notHealthyHigh", "startFailure")
    assert sensors[0].open_health_issues == ()  # the closed issue is not open
    assert sensors[0].dns_names == ("dc1.contoso.test",)


def test_the_emulator_closes_a_connection_the_client_asked_to_close_and_says_so(
    tmp_path: Path, graph: GraphEmulator
) -> None:
    """Graph's client sends `Connection: close`; an answer without it let the pool reuse a socket the
    server was closing, and a 20-page listing failed with "Remote end closed connection" under load."""
    url = f"{graph.authority_url}/{graph.tenant_id}/v2.0/.well-known/openid-configuration"
    answer = requests.get(url, headers={"Connection": "close"}, verify=graph.tls.ca_file, timeout=10)
    assert (answer.status_code, answer.headers.get("Connection")) == (200, "close")


def test_the_list_is_cached_so_a_burst_makes_one_graph_call(tmp_path: Path, graph: GraphEmulator) -> None:
    graph.add_sensor("DC1")
    now = [0.0]
    source = source_of(tmp_path, graph, clock=lambda: now[0])
    for _ in range(50):
        source.sensors()
    assert sensors_requests(graph) == 1
    now[0] = 61.0
    source.sensors()
    assert sensors_requests(graph) == 2


def test_throttling_is_waited_out_as_graph_asks(tmp_path: Path, graph: GraphEmulator) -> None:
    graph.add_sensor("DC1")
    graph.fail_next(SENSORS_PATH, 429, retry_after=7)
    graph.fail_next(SENSORS_PATH, 503, retry_after=3)
    waits: list[float] = []
    assert len(source_of(tmp_path, graph, sleep=waits.append).sensors()) == 1
    assert waits == [7.0, 3.0]


def test_throttling_past_the_bound_is_a_clear_error(tmp_path: Path, graph: GraphEmulator) -> None:
    graph.add_sensor("DC1")
    for _ in range(3):
        graph.fail_next(SENSORS_PATH, 429, retry_after=20)
    waits: list[float] = []
    with pytest.raises(GraphError, match="Graph throttled"):
        source_of(tmp_path, graph, sleep=waits.append, max_throttle_wait=30.0).sensors()
    assert waits == [20.0]  # the second wait would pass the 30 s bound


def test_a_missing_permission_is_named(tmp_path: Path, graph: GraphEmulator) -> None:
    graph.add_sensor("DC1")
    graph.withhold_permission(SENSORS_PERMISSION)
    with pytest.raises(GraphError, match=r"403.*SecurityIdentitiesSensors\.Read\.All"):
        source_of(tmp_path, graph).sensors()


def test_generation_comes_from_the_version_and_is_never_guessed() -> None:
    assert generation_of("2.250.18972.56743") == "2"
    assert generation_of("3.0.1234.0") == "3"
    assert generation_of(None) == "unknown"
    assert generation_of("1.9") == "unknown"


def graph_sensor(name: str, domain: str = "contoso.test", *dns_names: str) -> GraphSensor:
    return GraphSensor(
        id=name.lower(),
        display_name=name,
        domain=domain,
        sensor_type="domainControllerIntegrated",
        version="2.250.1.1",
        health_status="healthy",
        deployment_status="upToDate",
        open_issues_count=0,
        dns_names=dns_names,
    )


@pytest.mark.parametrize(
    ("graph_name", "config_name", "merged"),
    [
        ("DC1", "dc1.contoso.test", True),  # the short name, in the entry's domain
        ("dc1.CONTOSO.test", "DC1.contoso.TEST.", True),  # case and one trailing dot ignored
        ("dc1.contoso.test", "dc1.fabrikam.test", False),
        ("dc1", "dc10.contoso.test", False),
    ],
)
def test_names_match_case_insensitively_on_the_full_name_or_in_the_same_domain(
    tmp_path: Path, graph_name: str, config_name: str, merged: bool
) -> None:
    settings = settings_of(
        tmp_path, f'[[sensors]]\nname = "s"\nendpoint = "https://{config_name}:5986/wsman"\n'
    )
    dns = (graph_name,) if "." in graph_name else ()
    members = merge_fleet(settings, [graph_sensor(graph_name.split(".")[0], "contoso.test", *dns)])
    assert [m.source for m in members] == (["both"] if merged else ["graph", "config"])


def test_graph_and_config_sensors_are_merged_by_dns_name(tmp_path: Path) -> None:
    settings = settings_of(
        tmp_path,
        '[[sensors]]\nname = "dc1"\nendpoint = "https://127.0.0.1:5986/wsman"\n'
        '[[sensors]]\nname = "ata1"\nendpoint = "ata1.contoso.test"\nkind = "ata"\n',
    )
    graph_sensor = GraphSensor(
        id="a",
        display_name="DC1",
        domain="contoso.test",
        sensor_type="domainControllerIntegrated",
        version="2.250.1.1",
        health_status="healthy",
        deployment_status="upToDate",
        open_issues_count=0,
        dns_names=("dc1.contoso.test",),
    )
    only_graph = replace(graph_sensor, id="b", display_name="DC9", dns_names=())
    rows = build_rows(merge_fleet(settings, [graph_sensor, only_graph]))
    assert [(r.name, r.source, r.winrm) for r in rows] == [
        ("dc1", "both", True),
        ("DC9", "graph", False),
        ("ata1", "config", True),
    ]
    assert rows[1].dns_name == "dc9.contoso.test"
    assert (rows[2].generation, rows[2].uses_dsa, rows[2].verdict) == ("unknown", None, "unknown")
    assert rows[2].domain == "contoso.test"


def test_atp_bot_sensors_json_lists_the_mixed_fleet(
    tmp_path: Path, graph: GraphEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    mixed_fleet(graph)
    graph.add_issue(CREDENTIALS_ISSUE, sensors=("dc3.contoso.test",))
    config = write_config(tmp_path, graph_toml(graph))
    assert main(["--config", str(config), "sensors", "--json"]) == 1
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert all(set(r) == ROW_FIELDS for r in rows.values())
    assert rows["DC1"] | {"problems": []} == {
        "name": "DC1",
        "dns_name": "dc1.contoso.test",
        "domain": "contoso.test",
        "source": "graph",
        "sensor_type": "domainControllerIntegrated",
        "version": "2.250.18972.56743",
        "generation": "2",
        "uses_dsa": True,
        "health_status": "healthy",
        "deployment_status": "upToDate",
        "open_health_issues": [],
        "winrm": False,
        "verdict": "healthy",
        "problems": [],
    }
    dc2 = rows["DC2"]
    assert (dc2["generation"], dc2["uses_dsa"], dc2["verdict"]) == ("3", False, "healthy")
    assert rows["DC3"]["deployment_status"] == "startFailure" and rows["DC3"]["verdict"] == "attention"
    assert rows["DC3"]["open_health_issues"] == [CREDENTIALS_ISSUE]
    assert rows["DC4"]["verdict"] == "attention" and rows["ADFS1"]["sensor_type"] == "adfsIntegrated"


def test_atp_bot_sensors_filters_by_domain_and_exits_0_when_all_are_healthy(
    tmp_path: Path, graph: GraphEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    graph.add_sensor("DC1")
    graph.add_sensor("DC4", domain="fabrikam.test", deployment_status="disconnected")
    config = write_config(tmp_path, graph_toml(graph))
    assert main(["--config", str(config), "sensors", "--domain", "CONTOSO.test"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:3] == ["SENSOR", "DOMAIN", "SOURCE"]
    assert "DC1" in out and "DC4" not in out
    assert main(["--config", str(config), "sensors"]) == 1
    assert "DC4: deployment disconnected" in capsys.readouterr().out


@pytest.mark.parametrize("status", [401, 403])
def test_atp_bot_sensors_exits_3_naming_the_permission(
    tmp_path: Path, graph: GraphEmulator, capsys: pytest.CaptureFixture[str], status: int
) -> None:
    graph.fail_next(SENSORS_PATH, status)
    config = write_config(tmp_path, graph_toml(graph))
    assert main(["--config", str(config), "sensors"]) == 3
    err = capsys.readouterr().err
    assert "SecurityIdentitiesSensors.Read.All" in err
    assert GRAPH_SECRET not in err


def test_atp_bot_sensors_without_sensors_is_a_configuration_error(
    tmp_path: Path, graph: GraphEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, graph_toml(graph, discover=False))
    assert main(["--config", str(config), "sensors"]) == 2
    assert "discover_sensors" in capsys.readouterr().err


def test_the_secret_and_token_never_reach_the_output_or_logs(
    tmp_path: Path, graph: GraphEmulator, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    mixed_fleet(graph)
    config = write_config(tmp_path, graph_toml(graph))
    main(["-v", "--config", str(config), "sensors", "--json"])
    captured = capsys.readouterr()
    tokens = graph.issued_tokens
    assert tokens
    for text in (captured.out, captured.err, *(r.getMessage() for r in caplog.records)):
        assert GRAPH_SECRET not in text
        assert not any(token in text for token in tokens)


def test_health_issues_that_open_and_close_show_on_the_sensor(tmp_path: Path, graph: GraphEmulator) -> None:
    graph.add_sensor("DC1")
    now = [0.0]
    source = source_of(tmp_path, graph, clock=lambda: now[0])
    assert source.sensors()[0].open_health_issues == ()
    issue = graph.add_issue(CREDENTIALS_ISSUE, sensors=("DC1.contoso.test",))
    now[0] += 61
    assert source.sensors()[0].open_health_issues == (CREDENTIALS_ISSUE,)
    graph.set_status(issue, "closed")
    now[0] += 61
    assert source.sensors()[0].open_health_issues == ()


def test_atp_bot_sensors_needs_only_the_graph_credentials(
    tmp_path: Path, graph: GraphEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    mixed_fleet(graph)
    config = tmp_path / "only-graph.toml"
    config.write_text(f"state_dir = {toml_str(tmp_path / 'state')}\n" + graph_toml(graph), encoding="utf-8")
    assert main(["--config", str(config), "sensors", "--json"]) == 1  # DC3 and DC4 need attention
    assert len(json.loads(capsys.readouterr().out)) == 6
    assert main(["--config", str(config), "run"]) == 2
    assert "atp-bot run needs at least one [[accounts]]" in capsys.readouterr().err
    no_graph = tmp_path / "nothing.toml"
    no_graph.write_text(graph_toml(graph, discover=False), encoding="utf-8")
    assert main(["--config", str(no_graph), "sensors"]) == 2
    assert "at least one [[accounts]]" in capsys.readouterr().err


def test_a_graph_name_that_cannot_be_an_endpoint_gets_graph_only_checks(tmp_path: Path) -> None:
    settings = settings_of(tmp_path, '[winrm]\nendpoint_template = "https://{dns_name}:5986/wsman"\n')
    odd = graph_sensor("DC 1 (old)", "contoso.test", "dc 1.contoso.test")
    (member,) = merge_fleet(settings, [odd])
    assert member.winrm_config is None
    assert member.problems[-1] == (
        "not checked over WinRM: its DNS name 'dc 1.contoso.test' is not a DNS host name "
        "(letters, digits, hyphens and dots only)"
    )
