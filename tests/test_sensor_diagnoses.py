"""Sensor checks that send the operator the right way, against the WinRM emulator (the real pywinrm
client): a wrong WinRM password is "access denied" (exit 1: the host answered and refused), and `check`
and `sensors` give the same exit code for the same fleet (a problem wins over "could not be checked")."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.cli import main
from lab.graph import GraphEmulator
from lab.winrm.model import Host
from lab.winrm.server import WinRMEmulator
from tests.test_sensor_inventory import GRAPH_SECRET, graph_toml
from tests.winrm_lab import settings_toml


@pytest.fixture
def graph(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[GraphEmulator]:
    monkeypatch.setenv("ATP_BOT_TEST_GRAPH_SECRET", GRAPH_SECRET)
    with GraphEmulator(tmp_path / "graph", client_secret=GRAPH_SECRET) as emulator:
        yield emulator


def write_config(tmp_path: Path, emulator: WinRMEmulator, names: list[str], **winrm: str) -> Path:
    path = tmp_path / "atp-bot.toml"
    sensors = [{"name": n, "endpoint": emulator.endpoint(n)} for n in names]
    path.write_text(settings_toml(sensors, winrm=winrm, checks={"host_timeout": 5}), encoding="utf-8")
    return path


def test_a_wrong_winrm_password_is_access_denied_and_exits_1(
    emulator: WinRMEmulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    emulator.add_host(Host.sensor("s1"))
    monkeypatch.setenv("WRONG_WINRM_PASSWORD", "not-the-password")
    config = write_config(tmp_path, emulator, ["s1"], password_env="WRONG_WINRM_PASSWORD")

    assert main(["--config", str(config), "check"]) == 1
    out = capsys.readouterr().out
    assert "ACCESS DENIED" in out and "UNREACHABLE" not in out
    assert "s1: the host refused atp-bot's WinRM credential: credentials rejected (HTTP 401)" in out
    assert "check [winrm] username and its password" in out
    assert out.splitlines()[-1] == "0 of 1 ok (1 with a problem)"

    assert main(["--config", str(config), "sensors"]) == 1
    assert "s1: the host refused atp-bot's WinRM credential" in capsys.readouterr().out


FLEETS = {
    "healthy": ([None], 0),
    "down": ([None, "refused"], 3),
    "stopped and down": (["stopped", "refused"], 1),
    "refused credential and down": (["access_denied", "refused"], 1),
    "bad output and down": (["bad_output", "refused"], 3),
}


@pytest.mark.parametrize("fleet", list(FLEETS))
def test_check_and_sensors_give_the_same_exit_code(
    fleet: str, emulator: WinRMEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    faults, expected = FLEETS[fleet]
    names = []
    for number, fault in enumerate(faults):
        host = Host.sensor(f"s{number}")
        if fault == "stopped":
            host.set_service("AATPSensor", "Stopped")
        elif fault is not None:
            host.fault = fault  # type: ignore[assignment]
        emulator.add_host(host)
        names.append(host.name)
    config = write_config(tmp_path, emulator, names)

    codes = [main(["--config", str(config), command]) for command in ("check", "sensors")]

    capsys.readouterr()
    assert codes == [expected, expected]


def test_check_counts_the_graph_sensors_it_cannot_reach_as_sensors_does(
    emulator: WinRMEmulator,
    graph: GraphEmulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    down = Host.sensor("s0")
    down.fault = "refused"
    emulator.add_host(down)
    graph.add_sensor("DC4", deployment_status="disconnected")  # Graph's only: no WinRM endpoint
    config = write_config(tmp_path, emulator, ["s0"])
    config.write_text(config.read_text() + graph_toml(graph))

    codes = [main(["--config", str(config), command]) for command in ("check", "sensors")]

    assert codes == [1, 1]  # a problem wins over "could not be checked", in both
    assert "DC4: deployment disconnected (Graph; not checked over WinRM)" in capsys.readouterr().out
    assert main(["--config", str(config), "check", "--sensor", "s0"]) == 3  # only s0 was asked for


def test_a_sensor_name_dns_cannot_resolve_is_told_plainly(
    emulator: WinRMEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "atp-bot.toml"
    endpoint = "http://sensor01.contoso.invalid:5985/wsman"  # a reserved name: resolution fails locally
    config.write_text(settings_toml([{"name": "sensor01", "endpoint": endpoint}]), encoding="utf-8")

    assert main(["--config", str(config), "check"]) == 3
    out = capsys.readouterr().out
    assert "sensor01: not checked: unreachable: cannot resolve sensor01.contoso.invalid in DNS" in out


def test_an_untrusted_sensor_certificate_names_ca_file_as_the_fix(
    tls_emulator: WinRMEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "atp-bot.toml"
    endpoint = tls_emulator.add_host(Host.sensor("s1"))  # its CA is not among this host's trusted CAs
    config.write_text(settings_toml([{"name": "s1", "endpoint": endpoint}]), encoding="utf-8")

    assert main(["--config", str(config), "check"]) == 3
    out = capsys.readouterr().out
    assert "certificate is not trusted by this host's trusted CAs" in out
    assert "set [winrm] ca_file to the CA that issued the sensor's certificate" in out
