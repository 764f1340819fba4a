"""A change counts only the sensors that use the account: real Samba DC, Graph and WinRM emulators."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.domain import LabDomain
from lab.graph import GraphEmulator
from lab.samba import LabUser
from lab.winrm.model import Host
from lab.winrm.server import WinRMEmulator
from tests.conftest import CANARY, run_cli
from tests.test_change import write_config
from tests.test_sensor_inventory import GRAPH_SECRET, graph_toml

pytestmark = pytest.mark.samba


def test_set_password_counts_only_the_sensors_that_use_the_account(
    lab_domain: LabDomain,
    fresh_user: LabUser,
    sensors: WinRMEmulator,
    env: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ATP_BOT_TEST_GRAPH_SECRET", GRAPH_SECRET)
    domain = lab_domain.dc.dns_domain
    sensors.add_host(Host.unified("sensor03"))  # unified, found over WinRM only
    with GraphEmulator(tmp_path / "graph", client_secret=GRAPH_SECRET) as graph:
        graph.add_sensor("sensor01", domain=domain)
        graph.add_sensor("dcu1", domain=domain, version="3.0.1234.0")  # unified, Graph only
        graph.add_sensor("other1", domain="fabrikam.test", deployment_status="startFailure")  # not ours
        lab_domain.dc.set_password(fresh_user.name, CANARY)
        config = write_config(tmp_path, lab_domain, fresh_user, sensors, graph_toml(graph))
        assert run_cli(config, "store", "init").returncode == 0
        args = ("set-password", "--account", "svc", "--password-stdin", "--portal-done")
        done = run_cli(config, *args, stdin=CANARY + "\n")

    assert done.returncode == 0, done.stdout + done.stderr  # other1 (another domain) does not count
    assert "SAVED: account svc" in done.stdout
    assert "that do not use the directory service account: dcu1" in done.stdout
    assert "sensor03  ok      SenseIdentity running (unified sensor" in done.stdout
    assert "other1" not in done.stdout and "not installed" not in done.stdout
    assert CANARY not in done.stdout + done.stderr and GRAPH_SECRET not in done.stdout + done.stderr


def test_set_password_checks_a_fleet_that_graph_alone_names(
    lab_domain: LabDomain,
    fresh_user: LabUser,
    sensors: WinRMEmulator,
    env: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No `[[sensors]]` at all: the sensors a change concerns come from Graph (reached through
    `[winrm] endpoint_template`), and the CLI checks them, as the change path counts them."""
    monkeypatch.setenv("ATP_BOT_TEST_GRAPH_SECRET", GRAPH_SECRET)
    sensors.add_host(Host.sensor("localhost"))
    port = sensors.endpoint("localhost").rsplit(":", 1)[1].split("/")[0]
    with GraphEmulator(tmp_path / "graph", client_secret=GRAPH_SECRET) as graph:
        graph.add_sensor("localhost", domain="localhost", dns_names=("localhost",))
        lab_domain.dc.set_password(fresh_user.name, CANARY)
        config = write_config(tmp_path, lab_domain, fresh_user, sensors, graph_toml(graph))
        text = config.read_text(encoding="utf-8").split("[[sensors]]")[0]  # Graph's sensors only
        text = text.replace(
            'transport = "ntlm"\n',
            f'transport = "ntlm"\nendpoint_template = "http://{{dns_name}}:{port}/wsman"\n'
            'allowed_domains = ["localhost"]\n',
        )
        domains = f'domains = ["{lab_domain.dc.dns_domain}", "localhost"]\n'
        text = text.replace('id = "svc"\n', 'id = "svc"\n' + domains)
        config.write_text(text + graph_toml(graph), encoding="utf-8")
        assert run_cli(config, "store", "init").returncode == 0
        args = ("set-password", "--account", "svc", "--password-stdin", "--portal-done")
        done = run_cli(config, *args, stdin=CANARY + "\n")

    assert done.returncode == 0, done.stdout + done.stderr
    assert "Checking 1 sensor(s)" in done.stdout, done.stdout
    assert "No sensors are configured" not in done.stdout
    assert sensors.host("localhost").counters.scripts == 1
