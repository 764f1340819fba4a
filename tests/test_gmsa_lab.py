"""`atp-bot gmsa check` against the real Samba AD DC: gMSA objects, computer accounts and nested groups
made over LDAP, security descriptors encoded by Samba itself."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import tomli_w

from bot.config import load_settings
from bot.gmsa import Status, check_gmsa
from bot.monitor.cycle import run_monitor_cycle
from bot.monitor.render import render_incident
from commands import MODULES
from commands.alerts import incident_message
from commands.password.views import Action as PasswordAction
from lab.domain import LabDomain
from lab.gmsa import LabGmsa, LabPrincipal
from lab.graph import GraphEmulator
from lab.samba import LabUser
from lab.winrm.model import Host, log_line
from lab.winrm.server import WinRMEmulator
from tests import monitor_tools
from tests.conftest import (
    CANARY,
    SENSOR_WINRM_PASSWORD,
    SENSOR_WINRM_USER,
    assert_no_canary,
    closed_port_url,
    run_cli,
    sensor_config,
)
from tests.slack_lab import OPS, running_lab, wait_for
from tests.test_sensor_inventory import GRAPH_SECRET
from tests.test_sensor_inventory_slack import graph_config

pytestmark = pytest.mark.samba
LOOKUP_ENV = "ATP_BOT_TEST_GMSA_LOOKUP"


@dataclass(frozen=True)
class GmsaWorld:
    lab: LabDomain
    objects: LabGmsa
    lookup: LabUser
    computers: dict[str, LabPrincipal]


@pytest.fixture(scope="module")
def world(lab_domain: LabDomain) -> GmsaWorld:
    """sensor01 in MDI-Outer, sensor02 in MDI-Sensors inside MDI-Outer, sensor03 in neither; gMSAs:
    `mdisvc$` (MDI-Outer may retrieve), `weaksvc$` (disabled, sensor01 only, no AES), `denysvc$`
    (MDI-Outer, but sensor01 denied). The lookup account's password is the canary."""
    objects = LabGmsa(lab_domain.dc)
    computers = {name: objects.add_computer(name) for name in ("sensor01", "sensor02", "sensor03")}
    inner = objects.add_group("MDI-Sensors", [computers["sensor02"]])
    outer = objects.add_group("MDI-Outer", [inner, computers["sensor01"]], universal=True)
    objects.add_gmsa("mdisvc", [outer])
    objects.add_gmsa("weaksvc", [computers["sensor01"]], encryption_types=None, enabled=False)
    objects.add_gmsa("denysvc", [outer], denied=[computers["sensor01"]], encryption_types=0x4)
    foreign = LabPrincipal("foreign", "", "S-1-5-21-1-2-3-1105")  # a group of another domain
    objects.add_gmsa("xdomsvc", [inner, foreign])
    lookup = lab_domain.dc.create_user("gmsa-lookup", CANARY, never_expires=True)
    return GmsaWorld(lab_domain, objects, lookup, computers)


def gmsa_config(
    world: GmsaWorld,
    tmp_path: Path,
    gmsa: str = "mdisvc$",
    dcs: list[str] | None = None,
    winrm: WinRMEmulator | None = None,
    graph: GraphEmulator | None = None,
) -> Path:
    dc = world.lab.dc
    account = {
        "id": "corp",
        "kind": "gmsa",
        "username": gmsa,
        "domain": dc.dns_domain,
        "domain_controllers": dcs or [dc.ldaps_url],
        "ca_file": str(dc.ca_file),
        "lookup_username": world.lookup.upn,
        "lookup_password_env": LOOKUP_ENV,
    }
    sensors = [
        {"name": n, "endpoint": "https://127.0.0.1:5986/wsman", "account": "corp"} for n in world.computers
    ]
    config = {"state_dir": str(tmp_path / "state"), "accounts": [account], "sensors": sensors}
    # WinRM credentials as any real configuration has them (config check requires them of a sensor);
    # without an emulator nothing answers, so the optional host checks say so and change no verdict.
    config["winrm"] = {"username": "CORP\\atp-winrm", "password_env": LOOKUP_ENV}
    if winrm is not None:
        config |= sensor_config(winrm, "corp")
    if graph is not None:
        config |= graph_config(graph)
    path = tmp_path / "atp-bot.toml"
    path.write_text(tomli_w.dumps(config))
    return path


@pytest.fixture(scope="module")
def graph_only(world: GmsaWorld) -> dict[str, LabPrincipal]:
    """Computers of sensors that only Graph lists, in no allowed group: sensor04 (classic), sensor05
    (unified)."""
    return {name: world.objects.add_computer(name) for name in ("sensor04", "sensor05")}


@pytest.fixture
def graph(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[GraphEmulator]:
    monkeypatch.setenv("ATP_BOT_TEST_GRAPH_SECRET", GRAPH_SECRET)
    with GraphEmulator(tmp_path / "graph", client_secret=GRAPH_SECRET) as emulator:
        yield emulator


@pytest.fixture(autouse=True)
def _lookup_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LOOKUP_ENV, CANARY)


def test_check_names_exactly_the_sensors_that_cannot_retrieve_the_password(
    world: GmsaWorld, tmp_path: Path
) -> None:
    result = run_cli(gmsa_config(world, tmp_path), "gmsa", "check", "--account", "corp", "--json")
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert report["account"] == "corp"
    assert report["sensors"] == [
        {"name": "sensor01", "computer": "sensor01$", "may_retrieve": True, "via": "MDI-Outer"},
        {"name": "sensor02", "computer": "sensor02$", "may_retrieve": True, "via": "MDI-Outer > MDI-Sensors"},
        {"name": "sensor03", "computer": "sensor03$", "may_retrieve": False, "via": None},
    ]
    checks = {c["name"]: c for c in report["checks"]}
    assert set(checks["retrieval"]) == {"name", "status", "detail", "fix"}
    assert checks["retrieval"]["status"] == "problem"
    assert (
        "sensor03 may not retrieve mdisvc$: its computer account is not in MDI-Outer"
        in checks["retrieval"]["detail"]
    )
    assert "sensor01 " not in checks["retrieval"]["detail"].replace("sensor01 joined", "")
    assert "Add-ADGroupMember -Identity 'MDI-Outer' -Members 'sensor03$'" in checks["retrieval"]["fix"]
    # The groups were just made: the sensors that joined them may hold an old Kerberos ticket.
    assert "klist purge -li 0x3e7" in checks["retrieval"]["fix"]
    assert checks["object"]["status"] == "ok"
    assert checks["encryption"]["status"] == "ok"
    assert "AES128, AES256" in checks["encryption"]["detail"]
    assert "30 days" in checks["encryption"]["detail"]
    assert_no_canary_text(result.stdout + result.stderr)


def assert_no_canary_text(text: str) -> None:
    assert CANARY not in text


def test_the_text_report_says_the_same(world: GmsaWorld, tmp_path: Path) -> None:
    result = run_cli(gmsa_config(world, tmp_path), "gmsa", "check")
    assert result.returncode == 1
    assert "retrieval: PROBLEM: sensor03 may not retrieve mdisvc$" in result.stdout
    assert "sensor02 (sensor02$): may retrieve via MDI-Outer > MDI-Sensors" in result.stdout
    assert "sensor03 (sensor03$): MAY NOT retrieve" in result.stdout
    assert_no_canary_text(result.stdout + result.stderr)


def test_disabled_gmsa_without_aes_and_a_direct_computer(
    world: GmsaWorld, tmp_path: Path, canary_logs: pytest.LogCaptureFixture
) -> None:
    settings = load_settings(gmsa_config(world, tmp_path, "weaksvc$"))
    report = check_gmsa(settings, settings.accounts[0])
    checks = {c.name: c for c in report.checks}
    assert checks["object"].status is Status.PROBLEM
    assert checks["object"].fix == "Enable-ADAccount -Identity 'weaksvc$'"
    assert checks["encryption"].status is Status.PROBLEM
    assert "-KerberosEncryptionType AES128,AES256" in checks["encryption"].fix
    access = {s.name: (s.may_retrieve, s.via) for s in report.sensors}
    assert access == {"sensor01": (True, "direct"), "sensor02": (False, None), "sensor03": (False, None)}
    # No group is allowed: the fix names every principal for Set-ADServiceAccount.
    assert "-PrincipalsAllowedToRetrieveManagedPassword 'sensor01$', 'sensor02$', 'sensor03$'" in (
        checks["retrieval"].fix
    )
    assert_no_canary(canary_logs, json.dumps(report.as_json()))


def test_a_deny_entry_wins_over_the_group(world: GmsaWorld, tmp_path: Path) -> None:
    settings = load_settings(gmsa_config(world, tmp_path, "denysvc$"))
    report = check_gmsa(settings, settings.accounts[0])
    access = {s.name: (s.may_retrieve, s.via) for s in report.sensors}
    assert access == {
        "sensor01": (False, "direct"),
        "sensor02": (True, "MDI-Outer > MDI-Sensors"),
        "sensor03": (False, None),
    }
    retrieval = next(c for c in report.checks if c.name == "retrieval")
    assert "sensor01 may not retrieve denysvc$: a Deny entry names its computer account by name" in (
        retrieval.detail
    )
    assert (
        "Set-ADServiceAccount -Identity 'denysvc' -PrincipalsAllowedToRetrieveManagedPassword 'MDI-Outer'"
        in (retrieval.fix)
    )
    assert "RC4" in next(c for c in report.checks if c.name == "encryption").detail


def test_a_missing_gmsa_is_a_problem(world: GmsaWorld, tmp_path: Path) -> None:
    result = run_cli(gmsa_config(world, tmp_path, "nosuchsvc$"), "gmsa", "check", "--json")
    assert result.returncode == 1
    checks = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    assert checks["object"]["status"] == "problem"
    assert "atp-bot gmsa plan --account corp --gmsa nosuchsvc" in checks["object"]["fix"]


def test_unreachable_domain_controllers_exit_3(world: GmsaWorld, tmp_path: Path) -> None:
    result = run_cli(gmsa_config(world, tmp_path, dcs=[closed_port_url()]), "gmsa", "check", "--json")
    assert result.returncode == 3, result.stdout + result.stderr
    assert {c["status"] for c in json.loads(result.stdout)["checks"]} == {"unknown"}


def test_kds_root_key_missing_then_too_young_then_ready(world: GmsaWorld, tmp_path: Path) -> None:
    """Samba holds the KDS containers and an msKds-ProvRootKey, so each branch is proven on the DC."""
    settings = load_settings(gmsa_config(world, tmp_path))
    account = settings.accounts[0]

    def kds() -> tuple[Status, str, str]:
        check = next(c for c in check_gmsa(settings, account).checks if c.name == "kds_root_key")
        return check.status, check.detail, check.fix

    status, detail, fix = kds()
    assert (status, "no KDS root key" in detail) == (Status.PROBLEM, True)
    assert fix.startswith("Add-KdsRootKey -EffectiveImmediately")
    now = datetime.now(UTC)
    world.objects.add_kds_root_key(now - timedelta(hours=20))  # AD's default: only admins read it
    status, detail, _ = kds()
    assert (status, "No KDS root key is visible to the lookup account" in detail) == (Status.UNKNOWN, True)
    lookup = LabPrincipal(world.lookup.name, world.lookup.dn, world.objects.sid_of(world.lookup.dn))
    world.objects.add_kds_root_key(now - timedelta(hours=1), readable_by=lookup)
    status, detail, fix = kds()
    assert (status, "less than 10 hours ago" in detail) == (Status.PROBLEM, True)
    assert fix.startswith("Wait until ")
    world.objects.add_kds_root_key(now - timedelta(hours=11), readable_by=lookup)
    assert kds()[0] is Status.OK


def test_slack_shows_the_same_and_refuses_a_password_change(world: GmsaWorld, tmp_path: Path) -> None:
    config = tomllib.loads(gmsa_config(world, tmp_path).read_text())
    with running_lab("http", modules=MODULES, config=config) as lab:
        ack = lab.emulator.slash_command("gmsa")
        assert "Checking the gMSA mdisvc$ of account `corp`" in ack.text

        def final() -> str | None:
            texts = [c.args.get("text", "") for c in lab.emulator.calls("response_url")]
            return next((t for t in reversed(texts) if "retrieval:" in t), None)

        shown = wait_for(final, timeout=60)
        assert "sensor03 may not retrieve mdisvc$: its computer account is not in MDI-Outer" in shown
        assert "sensor02 (sensor02$): may retrieve via MDI-Outer > MDI-Sensors" in shown
        refused = lab.emulator.slash_command("password corp").text
        assert refused.startswith("Account corp is a group managed service account (mdisvc$)")
        assert "atp-bot gmsa check --account corp" in refused
        assert not lab.emulator.calls("views.open")
        # an alert's "Update password" button
        lab.emulator.click(PasswordAction.OPEN, channel=OPS, message_ts="1.000001", value="corp")

        def told() -> str | None:
            texts = [c.args.get("text", "") for c in lab.emulator.calls("chat.postEphemeral")]
            return next((t for t in texts if "group managed service account" in t), None)

        assert wait_for(told, timeout=30)
        assert not lab.emulator.calls("views.open")
        assert CANARY not in json.dumps([c.args for c in lab.emulator.calls()])


def test_host_checks_on_the_sensors_over_winrm(world: GmsaWorld, tmp_path: Path, env: None) -> None:
    """sensor01 can use the gMSA; sensor02 too, but a GPO restricts "Log on as a service"; sensor03's
    Test-ADServiceAccount fails."""
    with WinRMEmulator(username=SENSOR_WINRM_USER, password=SENSOR_WINRM_PASSWORD) as winrm:
        for name in world.computers:
            winrm.add_host(Host.sensor(name))
        winrm.hosts["sensor01"].gmsa_usable.add("mdisvc")
        winrm.hosts["sensor02"].gmsa_usable.add("mdisvc")
        winrm.hosts["sensor02"].service_logon = ["CONTOSO\\svc-other"]
        result = run_cli(gmsa_config(world, tmp_path, winrm=winrm), "gmsa", "check", "--json")
    assert result.returncode == 1, result.stderr
    hosts = {c["name"]: c for c in json.loads(result.stdout)["checks"] if c["name"].startswith("host:")}
    assert hosts["host:sensor01"]["status"] == "ok"
    assert hosts["host:sensor02"]["status"] == "problem"
    assert (
        '"Log on as a service" right is restricted by policy to CONTOSO\\svc-other'
        in (hosts["host:sensor02"]["detail"])
    )
    assert hosts["host:sensor03"]["status"] == "problem"
    assert "Test-ADServiceAccount says sensor03 cannot use mdisvc$" in hosts["host:sensor03"]["detail"]
    assert "klist purge -li 0x3e7" in hosts["host:sensor03"]["fix"]
    assert CANARY not in result.stdout + result.stderr


def test_a_gmsa_failure_in_a_sensor_log_puts_the_verdict_into_the_alert(
    world: GmsaWorld, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ATP_BOT_TEST_WINRM", monitor_tools.WINRM_PASSWORD)
    monkeypatch.delenv("ATP_BOT_STORE_KEY", raising=False)
    dc = world.lab.dc
    account = (
        f'[[accounts]]\nid = "svc"\nkind = "gmsa"\nusername = "mdisvc$"\ndomain = "{dc.dns_domain}"\n'
        f'domain_controllers = ["{dc.ldaps_url}"]\nca_file = "{dc.ca_file}"\n'
        f'lookup_username = "{world.lookup.upn}"\nlookup_password_env = "{LOOKUP_ENV}"\n'
    )
    clock, notifier = monitor_tools.Clock(), monitor_tools.RecordingNotifier()
    with WinRMEmulator(username=monitor_tools.WINRM_USER, password=monitor_tools.WINRM_PASSWORD) as winrm:
        winrm.add_host(Host.sensor("sensor01"))
        winrm.add_host(Host.sensor("sensor03"))
        settings = monitor_tools.monitor_settings(tmp_path, winrm, account=account)
        runtime = monitor_tools.make_runtime(settings, notifier, clock)
        assert run_monitor_cycle(runtime).opened == ()
        failure = "GMSA password could not be retrieved [errorCode=AccessDenied AccountName=mdisvc$]"
        winrm.host("sensor03").append_log(log_line(clock.now, failure))
        assert run_monitor_cycle(runtime).opened == ("svc",)
    (incident,) = notifier.of("post_incident")
    assert incident.gmsa_verdict is not None
    assert (
        "sensor03 may not retrieve mdisvc$: its computer account is not in MDI-Outer" in incident.gmsa_verdict
    )
    assert "sensor01" not in incident.gmsa_verdict
    assert [a.kind for a in incident.actions] == ["recheck"]  # no "update password" for a gMSA
    assert "fix: atp-bot gmsa check --account svc" in render_incident(incident)
    text, _ = incident_message(incident)
    assert "gMSA: sensor03 may not retrieve mdisvc$" in text


def test_a_principal_of_another_domain_makes_the_unreached_sensors_unknown(
    world: GmsaWorld, tmp_path: Path
) -> None:
    settings = load_settings(gmsa_config(world, tmp_path, "xdomsvc$"))
    report = check_gmsa(settings, settings.accounts[0])
    access = {s.name: (s.may_retrieve, s.via) for s in report.sensors}
    assert access == {
        "sensor01": (None, None),
        "sensor02": (True, "MDI-Sensors"),
        "sensor03": (None, None),
    }
    retrieval = next(c for c in report.checks if c.name == "retrieval")
    assert retrieval.status is Status.UNKNOWN
    assert "S-1-5-21-1-2-3-1105 could not be resolved here" in retrieval.detail


def test_graph_only_sensors_are_checked_and_unified_ones_need_no_password(
    world: GmsaWorld, graph_only: dict[str, LabPrincipal], graph: GraphEmulator, tmp_path: Path
) -> None:
    """With discover_sensors, Graph's sensors of the domain are checked by dNSHostName beside
    [[sensors]]; a unified 3.x sensor is named as needing no DSA, never as a problem."""
    domain = world.lab.dc.dns_domain
    graph.add_sensor("sensor02", domain=domain)  # also in [[sensors]]: one sensor
    graph.add_sensor("sensor04", domain=domain)
    graph.add_sensor("sensor05", domain=domain, version="3.0.1234.0")
    graph.add_sensor("sensor09", domain="fabrikam.test")  # another domain's
    path = gmsa_config(world, tmp_path, graph=graph)
    result = run_cli(path, "gmsa", "check", "--json")
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    access = {s["name"]: (s["computer"], s["may_retrieve"], s["via"]) for s in report["sensors"]}
    assert access == {
        "sensor01": ("sensor01$", True, "MDI-Outer"),
        "sensor02": ("sensor02$", True, "MDI-Outer > MDI-Sensors"),
        "sensor03": ("sensor03$", False, None),
        "sensor04": ("sensor04$", False, None),
    }
    retrieval = next(c for c in report["checks"] if c["name"] == "retrieval")
    assert (
        "sensor04 may not retrieve mdisvc$: its computer account is not in MDI-Outer." in retrieval["detail"]
    )
    assert "need not retrieve the password: sensor05." in retrieval["detail"]
    assert "sensor05 may not" not in retrieval["detail"]
    assert "Add-ADGroupMember -Identity 'MDI-Outer' -Members 'sensor04$', 'sensor03$'" in retrieval["fix"]
    assert "graph" not in {c["name"] for c in report["checks"]}
    text = run_cli(path, "gmsa", "check").stdout
    assert "sensor04 (sensor04$): MAY NOT retrieve" in text
    assert "sensor05: unified 3.x sensor: needs no directory service account" in text
    assert GRAPH_SECRET not in result.stdout + result.stderr + text
    assert_no_canary_text(result.stdout + result.stderr + text)


def test_graph_unreachable_exits_3_and_still_checks_the_configured_sensors(
    world: GmsaWorld, graph: GraphEmulator, tmp_path: Path, env: None
) -> None:
    """Every check ok (with a ready KDS root key, added here after the KDS test above has run) but
    Graph's list: exit 0, then 3 once Graph is stopped."""
    lookup = LabPrincipal(world.lookup.name, world.lookup.dn, world.objects.sid_of(world.lookup.dn))
    world.objects.add_kds_root_key(datetime.now(UTC) - timedelta(hours=11), readable_by=lookup)
    graph.add_sensor("sensor05", domain=world.lab.dc.dns_domain, version="3.0.1234.0")
    with WinRMEmulator(username=SENSOR_WINRM_USER, password=SENSOR_WINRM_PASSWORD) as winrm:
        for name in ("sensor01", "sensor02"):
            winrm.add_host(Host.sensor(name))
            winrm.hosts[name].gmsa_usable.add("mdisvc")
        path = gmsa_config(world, tmp_path, winrm=winrm, graph=graph)
        up = run_cli(path, "gmsa", "check", "--json")
        assert up.returncode == 0, up.stdout + up.stderr
        graph.stop()
        down = run_cli(path, "gmsa", "check", "--json")
    assert down.returncode == 3, down.stdout + down.stderr
    report = json.loads(down.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["graph"]["status"] == "unknown"
    assert checks["graph"]["detail"].startswith("Graph's sensor list could not be read (cannot sign in at ")
    assert {c["status"] for n, c in checks.items() if n != "graph"} == {"ok"}
    assert [s["name"] for s in report["sensors"]] == ["sensor01", "sensor02"]
    assert GRAPH_SECRET not in up.stdout + up.stderr + down.stdout + down.stderr


def test_a_host_that_shows_the_unified_sensor_needs_no_password(
    world: GmsaWorld, tmp_path: Path, env: None
) -> None:
    """Without Graph, the host check's WinRM evidence tells the generation: sensor03 runs the unified
    sensor (SenseIdentity, no AATPSensor), so its computer's absence from MDI-Outer is no problem."""
    with WinRMEmulator(username=SENSOR_WINRM_USER, password=SENSOR_WINRM_PASSWORD) as winrm:
        for name in ("sensor01", "sensor02"):
            winrm.add_host(Host.sensor(name))
            winrm.hosts[name].gmsa_usable.add("mdisvc")
        winrm.add_host(Host.unified("sensor03"))
        result = run_cli(gmsa_config(world, tmp_path, winrm=winrm), "gmsa", "check", "--json")
    report = json.loads(result.stdout)
    assert [s["name"] for s in report["sensors"]] == ["sensor01", "sensor02"]
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["retrieval"]["status"] == "ok"
    assert "need not retrieve the password: sensor03." in checks["retrieval"]["detail"]
    assert {n for n in checks if n.startswith("host:")} == {"host:sensor01", "host:sensor02"}
    assert {checks[n]["status"] for n in ("host:sensor01", "host:sensor02")} == {"ok"}
    assert CANARY not in result.stdout + result.stderr


def test_a_graph_only_sensor_gets_its_host_check_through_the_endpoint_template(
    world: GmsaWorld, graph: GraphEmulator, tmp_path: Path, env: None
) -> None:
    """sensor06 is only in Graph, its DNS name `localhost` (where the emulator listens) in a domain the
    account lists (`domains`): `[winrm] endpoint_template` addresses it, and its computer is found by that
    `dNSHostName`."""
    world.objects.add_computer("sensor06", dns_host_name="localhost")
    graph.add_sensor("sensor06", domain="localhost", dns_names=("localhost",))
    with WinRMEmulator(username=SENSOR_WINRM_USER, password=SENSOR_WINRM_PASSWORD) as winrm:
        winrm.add_host(Host.sensor("localhost"))
        winrm.hosts["localhost"].gmsa_usable.add("mdisvc")
        template = winrm.endpoint("localhost").replace(winrm.bind, "{dns_name}")
        config = tomllib.loads(gmsa_config(world, tmp_path, graph=graph).read_text())
        config["accounts"][0]["domains"] = [world.lab.dc.dns_domain, "localhost"]
        config["winrm"] = {**sensor_config(winrm, "corp")["winrm"], "endpoint_template": template}
        path = tmp_path / "atp-bot.toml"
        path.write_text(tomli_w.dumps(config))
        result = run_cli(path, "gmsa", "check", "--json")
        scripts = winrm.host("localhost").counters.scripts
    report = json.loads(result.stdout)
    assert scripts == 1
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["host:sensor06"]["status"] == "ok", checks["host:sensor06"]
    sensor06 = next(s for s in report["sensors"] if s["name"] == "sensor06")
    assert sensor06 == {"name": "sensor06", "computer": "sensor06$", "may_retrieve": False, "via": None}
    assert CANARY not in result.stdout + result.stderr


def test_the_plan_of_an_account_that_is_already_a_gmsa_says_so(
    world: GmsaWorld, tmp_path: Path, graph: GraphEmulator
) -> None:
    """Nothing to migrate: the plan says so, names `gmsa check` instead, and contacts no peer."""
    config = gmsa_config(world, tmp_path, graph=graph)
    result = run_cli(config, "gmsa", "plan", "--account", "corp", "--gmsa", "newsvc")
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    assert result.stdout == (
        "account corp (mdisvc$) is already a gMSA: there is nothing to migrate. "
        "Check it end to end with: atp-bot gmsa check --account corp\n"
    )
    assert graph.records == []
