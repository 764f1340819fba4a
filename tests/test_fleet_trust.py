"""What Graph says never steers a credential: hostile sensor names from the Graph emulator never become
WinRM endpoints (the WinRM emulator listening there receives no request), Graph's domain counts only
when it holds the sensor's name, and Graph and `[[sensors]]` merge on the full name (pywinrm, msal and
requests against the emulators, through `atp-bot sensors`, `check` and `config check`)."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from bot.cli import main
from bot.config import parse_settings
from bot.fleet import GraphFleet, account_sensors, merge_fleet
from bot.fleet.names import endpoint_host
from bot.gmsa.scope import sensor_scope
from bot.graph import GraphSensor
from lab.graph import GraphEmulator
from lab.winrm.model import Host
from lab.winrm.server import WinRMEmulator
from tests.test_sensor_inventory import GRAPH_SECRET, graph_sensor, graph_toml
from tests.winrm_lab import CANARY, settings_toml

UNIFIED = "3.0.1234.0"
OURS = ("contoso.test",)


@pytest.fixture
def graph(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[GraphEmulator]:
    monkeypatch.setenv("ATP_BOT_TEST_GRAPH_SECRET", GRAPH_SECRET)
    with GraphEmulator(tmp_path / "graph", client_secret=GRAPH_SECRET, page_size=3) as emulator:
        yield emulator


def port_of(emulator: WinRMEmulator, host: str) -> str:
    return emulator.endpoint(host).rsplit(":", 1)[1].split("/")[0]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "atp-bot.toml"
    path.write_text(text, encoding="utf-8")
    return path


def sensors_json(config: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, dict[str, Any]]]:
    code = main(["--config", str(config), "sensors", "--json"])
    return code, {row["name"]: row for row in json.loads(capsys.readouterr().out)}


@pytest.mark.parametrize(
    ("name", "refusal"),
    [
        ("127.0.0.1:5985", "has a port"),
        ("dc02.contoso.test:5985", "has a port"),
        ("127.0.0.1", "is an IP address, not a DNS name"),
        ("127.1", "is an IP address, not a DNS name"),  # what a resolver reads as 127.0.0.1
        ("0x7f000001", "is an IP address, not a DNS name"),
        ("[::1]", "is an IP address, not a DNS name"),
        ("::ffff:127.0.0.1", "is an IP address, not a DNS name"),
        ("dc02.contoso.test/wsman", "has a path"),
        ("atp@dc02.contoso.test", "has a user part"),
        ("dc02.contoso.test.evil.net", "is in none of our domains (contoso.test)"),
        ("attacker.example.net", "is in none of our domains (contoso.test)"),
        ("dc02evilcontoso.test", "is in none of our domains (contoso.test)"),  # not on a label boundary
        ("dc02.contoso.test.", None),  # one trailing dot is the same name
        ("dc02.contoso.test..", "is not a DNS host name"),
        ("dc02.contoso.test extra", "is not a DNS host name"),
        ("dc02.contoso.test\n", "is not a DNS host name"),
        ("dc02.\u212aontoso.test", "is not a DNS host name"),  # KELVIN SIGN lower-cases to "k"
        ("-dc02.contoso.test", "is not a DNS host name"),
        ("DC02.Contoso.TEST", None),
        ("dc02.sub.contoso.test", None),
    ],
)
def test_a_graph_name_is_an_endpoint_only_as_a_plain_host_name_in_our_domains(
    name: str, refusal: str | None
) -> None:
    found = endpoint_host(name, OURS)
    if refusal is None:
        assert (found.host, found.refusal) == (name.lower().rstrip("."), None)
    else:
        assert found.host is None and found.refusal is not None and refusal in found.refusal


def hostile_fleet(graph: GraphEmulator, port: str) -> dict[str, str]:
    """Graph sensors whose DNS names point at the listener on 127.0.0.1:`port`, or somewhere else."""
    names = {
        "PORT": f"127.0.0.1:{port}",
        "NAMEPORT": f"localhost:{port}",
        "PORTPATH": f"127.0.0.1:{port}/wsman",
        "USER": f"atp@localhost:{port}",
        "IP": "127.0.0.1",
        "LOOP": "localhost",
        "SUFFIX": "dc02.contoso.test.evil.net",
        "FOREIGN": "attacker.example.net",
    }
    for display, dns in names.items():
        graph.add_sensor(display, dns_names=(dns,))
    return names


def test_hostile_graph_names_never_receive_the_winrm_login(
    emulator: WinRMEmulator, graph: GraphEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    emulator.add_host(Host.sensor("localhost"))
    port = port_of(emulator, "localhost")
    names = hostile_fleet(graph, port)
    winrm = {"endpoint_template": "http://{dns_name}/wsman"}  # a name with a port would choose it
    config = write(tmp_path, settings_toml([], winrm=winrm) + graph_toml(graph))

    code, rows = sensors_json(config, capsys)
    victim = emulator.host("localhost").counters
    assert (victim.requests, dict(victim.round_trips)) == (0, {})  # no login arrived
    assert code == 1
    for display in names:
        assert rows[display]["winrm"] is False, display
        assert any(p.startswith("not checked over WinRM: its DNS name") for p in rows[display]["problems"])
    refusals = {display: rows[display]["problems"][-1].rpartition("' ")[2] for display in names}
    assert refusals == {
        "PORT": "has a port",
        "NAMEPORT": "has a port",
        "PORTPATH": "has a path",
        "USER": "has a user part",
        "IP": "is an IP address, not a DNS name",
        "LOOP": "is in none of our domains (contoso.test); [winrm] allowed_domains may list more",
        "SUFFIX": "is in none of our domains (contoso.test); [winrm] allowed_domains may list more",
        "FOREIGN": "is in none of our domains (contoso.test); [winrm] allowed_domains may list more",
    }
    main(["--config", str(config), "check", "--json"])
    capsys.readouterr()
    assert (victim.requests, dict(victim.round_trips)) == (0, {})

    # The listener was live: with `localhost` one of our domains, that one sensor (only) is checked.
    allowed = {"endpoint_template": f"http://{{dns_name}}:{port}/wsman", "allowed_domains": ["localhost"]}
    write(tmp_path, settings_toml([], winrm=allowed) + graph_toml(graph))
    _, rows = sensors_json(config, capsys)
    assert [name for name, row in rows.items() if row["winrm"]] == ["LOOP"]
    assert victim.scripts == 1
    assert CANARY not in capsys.readouterr().err


def test_a_refused_name_is_logged_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="bot.fleet")
    settings = parse_settings(settings_toml([], winrm={"endpoint_template": "https://{dns_name}/wsman"}))
    evil = f"{uuid.uuid4().hex}.evil.net"
    sensor = graph_sensor("EVIL", "evil.net", evil)
    for _ in range(3):
        (member,) = merge_fleet(settings, [sensor])
        assert member.winrm_config is None
    assert len([r for r in caplog.records if evil in r.getMessage()]) == 1


def test_graph_names_outside_their_claimed_domain_serve_no_account_of_it(tmp_path: Path) -> None:
    settings = parse_settings(settings_toml([], winrm={"endpoint_template": "https://{dns_name}/wsman"}))
    inside = graph_sensor("DC7", "contoso.test", "dc7.contoso.test")
    outside = graph_sensor("DC8", "contoso.test", "dc8.fabrikam.test")
    spoofed = graph_sensor("DC9", "contoso.test", "dc9.contoso.test.evil.net")
    fleet = account_sensors(settings, "contoso", [inside, outside, spoofed])
    assert fleet.names == ("DC7",)
    assert [s.endpoint for s in fleet.settings.sensors] == ["https://dc7.contoso.test:5986/wsman"]
    members = {m.name: m for m in merge_fleet(settings, [outside])}
    assert members["DC8"].domain is None
    assert "lies outside the domain Graph gives it ('contoso.test')" in members["DC8"].problems[0]


def test_another_forests_short_name_never_takes_over_a_configured_sensor(
    emulator: WinRMEmulator, graph: GraphEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`DC01` of fabrikam (unified, healthy) and the configured dc01.contoso.test, whose AATPSensor stopped:
    both listed, the stopped service told, and contoso's follow-ups still check it."""
    emulator.add_host(Host.sensor("dc01"))
    emulator.host("dc01").set_service("AATPSensor", "Stopped")
    graph.add_sensor("DC01", domain="fabrikam.test", version=UNIFIED)
    configured = {"name": "dc01.contoso.test", "endpoint": emulator.endpoint("dc01")}
    config = write(tmp_path, settings_toml([configured]) + graph_toml(graph))

    code, rows = sensors_json(config, capsys)
    assert code == 1
    assert sorted(rows) == ["DC01", "dc01.contoso.test"]
    mine = rows["dc01.contoso.test"]
    assert (mine["source"], mine["generation"], mine["verdict"]) == ("config", "2", "attention")
    assert any("AATPSensor" in p for p in mine["problems"])
    assert (rows["DC01"]["source"], rows["DC01"]["domain"]) == ("graph", "fabrikam.test")

    settings = parse_settings(config.read_text())
    graph_list = [graph_sensor("DC01", "fabrikam.test", "dc01.fabrikam.test")]
    fleet = account_sensors(settings, "contoso", graph_list)
    assert (fleet.names, fleet.not_using_dsa) == (("dc01.contoso.test",), ())


def test_an_ambiguous_short_name_is_told_never_guessed(tmp_path: Path) -> None:
    text = settings_toml([{"name": "dc01", "endpoint": "https://10.0.0.1:5986/wsman"}])
    text = text.replace(
        "[winrm]",
        '[[accounts]]\nid = "fabrikam"\nusername = "svc@fabrikam.test"\n'
        'domain_controllers = ["ldaps://dc1.fabrikam.test"]\n\n[winrm]',
    )
    settings = parse_settings(text)
    contoso = graph_sensor("DC01", "contoso.test")
    fabrikam = graph_sensor("DC01", "fabrikam.test")
    members = merge_fleet(settings, [contoso, fabrikam])
    assert [(m.name, m.source) for m in members] == [
        ("dc01.contoso.test", "graph"),
        ("dc01.fabrikam.test", "graph"),
        ("dc01", "config"),
    ]
    assert all(m.problems and m.problems[0].startswith("ambiguous match with") for m in members)
    assert "'dc01.contoso.test', 'dc01.fabrikam.test'" in members[2].problems[0]

    full = settings.model_copy(
        update={"sensors": [settings.sensors[0].model_copy(update={"name": "dc01.fabrikam.test"})]}
    )
    assert [(m.name, m.source) for m in merge_fleet(full, [contoso, fabrikam])] == [
        ("DC01", "graph"),
        ("dc01.fabrikam.test", "both"),
    ]


@pytest.mark.parametrize("transport", ["basic", "certificate"])
def test_the_endpoint_template_is_refused_in_clear_like_a_sensor(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], transport: str
) -> None:
    winrm: dict[str, Any] = {"transport": transport, "endpoint_template": "http://{dns_name}:5985/wsman"}
    if transport == "certificate":
        winrm |= {"cert_pem": str(tmp_path / "c.pem"), "cert_key_pem": str(tmp_path / "c.key")}
    config = write(tmp_path, settings_toml([], winrm=winrm))
    for args in (["config", "check"], ["config", "check", "--strict"], ["run"]):
        assert main(["--config", str(config), *args]) == 2, args
        err = capsys.readouterr().err
        assert f"winrm.endpoint_template: transport '{transport}' over http:// is refused" in err, args
        assert CANARY not in err


def test_the_endpoint_template_gets_the_warnings_of_a_sensor(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], winrm_password: str
) -> None:
    winrm = {"endpoint_template": "http://{dns_name}:5985/wsman", "cert_validation": False}
    config = write(tmp_path, settings_toml([], winrm=winrm))
    for args in (["config", "check"], ["config", "check", "--strict"]):
        main(["--config", str(config), *args])
        err = capsys.readouterr().err
        assert "winrm.endpoint_template: NTLM over http://" in err, args
        assert "winrm.endpoint_template: WinRM certificate validation is disabled" in err, args


def test_graph_never_moves_a_merged_sensor_to_another_domain(tmp_path: Path) -> None:
    """Graph names the configured dc01.contoso.test but claims it for fabrikam.test: it stays contoso's."""
    settings = parse_settings(
        settings_toml([{"name": "dc01.contoso.test", "endpoint": "https://10.0.0.1/wsman"}])
    )
    claimed = graph_sensor("DC01", "fabrikam.test", "dc01.contoso.test")
    (member,) = merge_fleet(settings, [claimed])
    assert (member.source, member.domain) == ("both", None)
    assert "lies outside the domain Graph gives it ('fabrikam.test')" in member.problems[0]
    assert account_sensors(settings, "contoso", [claimed]).names == ("dc01.contoso.test",)


class StubFleet:
    """Graph's sensor list as `GraphFleet.sensors` gives it."""

    def __init__(self, *sensors: GraphSensor) -> None:
        self.listed = sensors

    def sensors(self) -> tuple[tuple[GraphSensor, ...], str | None]:
        return self.listed, None


def test_gmsa_host_checks_reach_only_names_in_our_domains(tmp_path: Path) -> None:
    text = settings_toml([], winrm={"endpoint_template": "https://{dns_name}/wsman"}).replace(
        'username = "CONTOSO\\\\svc-atp"',
        'kind = "gmsa"\nusername = "mdisvc$"\ndomain = "contoso.test"\n'
        'lookup_username = "CONTOSO\\\\reader"\nlookup_password_env = "ATP_BOT_TEST_LOOKUP"',
    )
    settings = parse_settings(text)
    assert settings.account("contoso").kind == "gmsa"
    good = graph_sensor("DC5", "contoso.test", "dc5.contoso.test")
    hostile = [
        graph_sensor("DC6", "contoso.test", "127.0.0.1:5985"),
        graph_sensor("DC7", "contoso.test", "dc7.contoso.test.evil.net"),
        graph_sensor("DC8", "contoso.test", "dc8.contoso.test/x"),
    ]
    fleet = cast(GraphFleet, StubFleet(good, *hostile))
    scope = sensor_scope(settings, settings.account("contoso"), fleet)
    assert [(s.name, s.winrm.endpoint if s.winrm else None) for s in scope.sensors] == [
        ("DC5", "https://dc5.contoso.test:5986/wsman")
    ]


@pytest.mark.parametrize("domain", ["127.0.0.1", "evil.net:5985", "*.contoso.test", "contoso..test", ""])
def test_allowed_domains_takes_dns_domains_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], domain: str
) -> None:
    config = write(tmp_path, settings_toml([], winrm={"allowed_domains": ["corp.contoso.test", domain]}))
    assert main(["--config", str(config), "config", "check"]) == 2
    assert "winrm.allowed_domains" in capsys.readouterr().err
