"""Servers without a sensor: Graph's `sensorCandidates` (the Graph emulator, msal and requests) listed by
`atp-bot sensors` as rows needing attention, never contacted (pywinrm's emulator receives nothing)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from bot.cli import main
from lab.graph import SENSORS_PATH, SENSORS_PERMISSION, GraphEmulator
from lab.graph_candidates import CANDIDATES_PATH
from lab.winrm.model import Host
from lab.winrm.server import WinRMEmulator
from tests.slack_lab import running_lab
from tests.test_sensor_inventory import GRAPH_SECRET, ROW_FIELDS, graph_toml, write_config
from tests.test_sensor_inventory_slack import graph_config, listing
from tests.winrm_lab import CANARY, settings_toml

NO_SENSOR = "no Defender for Identity sensor is active on this server (Graph lists it as a sensor candidate)"
SEEN = datetime(2026, 12, 1, 8, 30, tzinfo=UTC)


@pytest.fixture
def graph(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[GraphEmulator]:
    monkeypatch.setenv("ATP_BOT_TEST_GRAPH_SECRET", GRAPH_SECRET)
    monkeypatch.setenv("ATP_BOT_TEST_WINRM", "unused")
    with GraphEmulator(tmp_path / "graph", client_secret=GRAPH_SECRET, page_size=2) as emulator:
        yield emulator


def sensors_json(
    config: Path, capsys: pytest.CaptureFixture[str], *options: str
) -> tuple[int, list[Any], str]:
    code = main(["--config", str(config), "sensors", "--json", *options])
    out, err = capsys.readouterr()
    return code, json.loads(out), err


def candidate_requests(graph: GraphEmulator) -> list[int]:
    return [r.status for r in graph.records if r.path == CANDIDATES_PATH]


def token(graph: GraphEmulator) -> str:
    """An app token from the emulator's token endpoint (the client credentials grant)."""
    form = {
        "grant_type": "client_credentials",
        "client_id": graph.client_id,
        "client_secret": GRAPH_SECRET,
        "scope": "https://graph.microsoft.com/.default",
    }
    answer = requests.post(
        f"{graph.authority_url}{graph.token_path}", data=form, verify=graph.tls.ca_file, timeout=10
    )
    return str(answer.json()["access_token"])


def get(graph: GraphEmulator, url: str, bearer: str | None) -> requests.Response:
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    return requests.get(url, headers=headers, verify=graph.tls.ca_file, timeout=10)


def test_the_emulator_pages_candidates_as_graph_does(graph: GraphEmulator) -> None:
    for i in range(5):
        graph.add_candidate(f"srv{i}.contoso.test", last_seen=SEEN)
    bearer = token(graph)
    url: str | None = f"{graph.graph_url}/security/identities/sensorCandidates?$top=3&$select=computerDnsName"
    pages = []
    while url is not None:
        answer = get(graph, url, bearer)
        assert answer.status_code == 200
        pages.append(answer.json()["value"])
        url = answer.json().get("@odata.nextLink")
    assert [len(page) for page in pages] == [3, 2]  # `$top` is the page size, kept in the next link
    assert set(pages[1][0]) == {"id", "computerDnsName"}
    full = get(graph, f"{graph.graph_url}/security/identities/sensorCandidates", bearer).json()["value"]
    assert set(full[0]) == {"id", "computerDnsName", "domainName", "lastSeenDateTime", "senseClientVersion"}
    assert (
        full[0]["lastSeenDateTime"] == "2026-12-01T08:30:00Z" and len(full) == 2
    )  # the emulator's page size
    assert (
        get(graph, f"{graph.graph_url}/security/identities/sensorCandidates?$top=0", bearer).status_code
        == 400
    )
    assert get(graph, f"{graph.graph_url}/security/identities/sensorCandidates", None).status_code == 401
    graph.withhold_permission(SENSORS_PERMISSION)
    assert get(graph, f"{graph.graph_url}/security/identities/sensorCandidates", bearer).status_code == 403


def test_candidates_are_rows_needing_attention_across_pages(
    tmp_path: Path, graph: GraphEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    graph.add_sensor("DC1")
    graph.add_candidate("dc1.CONTOSO.test.")  # Graph lists it as a sensor too: a sensor, not a candidate
    graph.add_candidate("FS1.contoso.test", last_seen=SEEN)
    graph.add_candidate("ca1.fabrikam.test", domain="fabrikam.test")
    graph.add_candidate("fs1.contoso.test")  # listed twice: one row
    config = write_config(tmp_path, graph_toml(graph))
    code, rows, err = sensors_json(config, capsys)
    assert code == 1 and err == ""  # a server without a sensor needs attention, as an unhealthy sensor does
    assert candidate_requests(graph) == [200, 200]  # four candidates, two per page
    assert [(r["name"], r["source"]) for r in rows] == [
        ("DC1", "graph"),
        ("fs1.contoso.test", "candidate"),
        ("ca1.fabrikam.test", "candidate"),
    ]
    assert all(set(r) == ROW_FIELDS for r in rows)
    assert rows[1] == {
        "name": "fs1.contoso.test",
        "dns_name": "fs1.contoso.test",
        "domain": "contoso.test",
        "source": "candidate",
        "sensor_type": None,
        "version": None,
        "generation": "unknown",
        "uses_dsa": False,
        "health_status": None,
        "deployment_status": None,
        "open_health_issues": [],
        "winrm": False,
        "verdict": "attention",
        "problems": [f"{NO_SENSOR}; last seen 2026-12-01 08:30 UTC"],
    }

    assert main(["--config", str(config), "sensors"]) == 1
    out = capsys.readouterr().out
    table = {line.split()[0]: line.split() for line in out.splitlines()[1:4]}
    assert table["ca1.fabrikam.test"][1:3] == ["fabrikam.test", "candidate"]
    assert table["ca1.fabrikam.test"][-1] == "attention"
    assert f"ca1.fabrikam.test: {NO_SENSOR}" in out


def test_domain_filters_candidates_by_their_domain_name(
    tmp_path: Path, graph: GraphEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    graph.add_sensor("DC1")
    graph.add_candidate("fs1.contoso.test")
    graph.add_candidate("ca1.fabrikam.test", domain="fabrikam.test")
    graph.add_candidate("web.evil.test", domain="contoso.test")  # Graph's domain does not hold the name
    config = write_config(tmp_path, graph_toml(graph))
    code, rows, _ = sensors_json(config, capsys, "--domain", "FABRIKAM.test.")
    assert (code, [r["name"] for r in rows]) == (1, ["ca1.fabrikam.test"])
    code, rows, _ = sensors_json(config, capsys, "--domain", "contoso.test")
    assert (code, [r["name"] for r in rows]) == (1, ["DC1", "fs1.contoso.test"])
    _, rows, _ = sensors_json(config, capsys)
    odd = rows[-1]
    assert (odd["name"], odd["domain"]) == ("web.evil.test", None)
    assert "lies outside the domain Graph gives it ('contoso.test')" in odd["problems"][-1]


@pytest.mark.parametrize(
    ("failure", "told"),
    [
        (
            403,
            "Graph refused /security/identities/sensorCandidates (HTTP 403): grant the app the "
            "SecurityIdentitiesSensors.Read.All application permission",
        ),
        (500, "Graph answered HTTP 500 for /security/identities/sensorCandidates"),
        ("malformed_json", "not JSON for /security/identities/sensorCandidates"),
        ("wrong_shape", "unexpected answer for /security/identities/sensorCandidates"),
    ],
)
def test_candidates_that_cannot_be_read_never_hide_the_sensors(
    tmp_path: Path, graph: GraphEmulator, capsys: pytest.CaptureFixture[str], failure: int | str, told: str
) -> None:
    dc1 = graph.add_sensor("DC1")
    graph.add_candidate("fs1.contoso.test")
    if isinstance(failure, int):
        graph.fail_next(CANDIDATES_PATH, failure)
    else:
        graph.answer_next(CANDIDATES_PATH, failure)  # type: ignore[arg-type]
    config = write_config(tmp_path, graph_toml(graph))
    code, rows, err = sensors_json(config, capsys)
    assert [r["name"] for r in rows] == ["DC1"]
    assert code == 3  # every sensor healthy, but whether a server lacks one could not be told
    assert "atp-bot: Graph's sensor candidates could not be read (" in err
    assert told in err and err.rstrip().endswith("; servers without a sensor are not listed")
    assert GRAPH_SECRET not in err

    graph.update_sensor(dc1, deploymentStatus="startFailure")
    graph.fail_next(CANDIDATES_PATH, 403)
    code, rows, _ = sensors_json(config, capsys)
    assert (code, [r["verdict"] for r in rows]) == (1, ["attention"])  # a sensor's problem is still 1


def test_candidates_are_not_asked_for_when_the_sensors_could_not_be_read(
    tmp_path: Path, graph: GraphEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    graph.add_candidate("fs1.contoso.test")
    graph.fail_next(SENSORS_PATH, 403)
    config = write_config(tmp_path, graph_toml(graph))
    code, rows, err = sensors_json(config, capsys)
    assert (code, rows, candidate_requests(graph)) == (3, [], [])
    assert "Graph's sensor list could not be read" in err and "candidates" not in err


def test_hostile_candidate_names_are_escaped_and_never_contacted(
    emulator: WinRMEmulator, graph: GraphEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    emulator.add_host(Host.sensor("localhost"))
    port = emulator.endpoint("localhost").rsplit(":", 1)[1].split("/")[0]
    hostile = "evil\x1b]0;pwned\x07\n<b>DC1: healthy</b>"
    for name in ("localhost", f"127.0.0.1:{port}", f"atp@localhost:{port}", hostile):
        graph.add_candidate(name, domain="localhost")
    # `localhost` is one of our domains: a *sensor* of that name would be checked there.
    winrm = {"endpoint_template": f"http://{{dns_name}}:{port}/wsman", "allowed_domains": ["localhost"]}
    config = tmp_path / "atp-bot.toml"
    config.write_text(settings_toml([], winrm=winrm) + graph_toml(graph), encoding="utf-8")

    code, rows, err = sensors_json(config, capsys)
    victim = emulator.host("localhost").counters
    assert (victim.requests, dict(victim.round_trips)) == (0, {})  # no login arrived
    assert code == 1 and all(r["winrm"] is False and r["source"] == "candidate" for r in rows)
    names = [r["name"] for r in rows]
    assert names[0] == "localhost"
    assert names[1:] == [repr(f"127.0.0.1:{port}"), repr(f"atp@localhost:{port}"), repr(hostile)]
    assert [r["dns_name"] for r in rows] == ["localhost", None, None, None]
    main(["--config", str(config), "sensors"])
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    assert "\nDC1: healthy" not in out  # the name cannot start a line of its own
    assert (victim.requests, dict(victim.round_trips)) == (0, {})
    assert CANARY not in out + err


def test_atp_sensors_shows_the_servers_without_a_sensor(graph: GraphEmulator) -> None:
    graph.add_sensor("dc-ok")
    graph.add_candidate("fs1.contoso.test", last_seen=SEEN)
    graph.add_candidate("<!channel>.contoso.test")
    graph.add_candidate("dc-ok.contoso.test")  # a sensor already
    with running_lab("http", config=graph_config(graph)) as lab:
        lab.emulator.slash_command("sensors")
        answer = listing(lab, "*Sensors*: 1")
        assert answer["text"] == (
            "*Sensors*: 1 — 0 need attention, 0 unknown, 1 healthy; 2 server(s) without a sensor"
        )
        header, *lines = [
            line for line in answer["blocks"][1]["text"]["text"].strip("`").splitlines() if line
        ]
        assert header.split() == ["SENSOR", "GEN", "DSA", "HEALTH", "DEPLOYMENT"]
        assert [line.split()[:2] for line in lines] == [
            ["!!", "'&lt;!channel&gt;.contoso.test"],
            ["!!", "fs1.contoso.test"],
            ["ok", "dc-ok"],
        ]
        assert lines[1].split()[2:] == ["-", "no", "DSA", "no", "sensor", "-"]
        shown = json.dumps(answer["blocks"])
        assert f"*fs1.contoso.test*: {NO_SENSOR}; last seen 2026-12-01 08:30 UTC" in shown
        assert "<!channel>" not in shown  # Graph's text is escaped: no mention reaches the channel


def test_atp_sensors_says_when_the_candidates_could_not_be_read(graph: GraphEmulator) -> None:
    graph.add_sensor("dc-ok")
    graph.fail_next(CANDIDATES_PATH, 403)
    with running_lab("http", config=graph_config(graph)) as lab:
        lab.emulator.slash_command("sensors")
        answer = listing(lab, "*Sensors*: 1")
        shown = json.dumps(answer["blocks"])
        assert "Graph's sensor candidates could not be read" in shown and SENSORS_PERMISSION in shown
        assert "dc-ok" in shown and GRAPH_SECRET not in json.dumps(answer)
