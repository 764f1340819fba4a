"""The monitor and the whole fleet: Graph's sensor health alerted once per problem with its recovery, the
sensors `atp-bot check` checks (Graph's through `[winrm] endpoint_template`), and unified sensors never
"not installed" (msal/requests against the Graph emulator, pywinrm against the WinRM emulator, the real
monitor cycle)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.fleet import GraphFleet
from bot.monitor.actions import start_sensor_service
from bot.monitor.context import MonitorContext
from bot.monitor.cycle import run_monitor_cycle
from bot.monitor.models import SensorHealthNotice
from bot.monitor.render import render_sensor_health
from commands.alerts import sensor_health_message
from lab.graph import GraphEmulator
from lab.winrm.model import Host
from lab.winrm.server import WinRMEmulator
from tests.monitor_tools import (
    WINRM_PASSWORD,
    WINRM_USER,
    Clock,
    RecordingNotifier,
    alert_rows,
    credential_errors,
    make_runtime,
    monitor_settings,
)
from tests.test_sensor_inventory import GRAPH_SECRET, graph_toml

UNIFIED = "3.0.1234.0"
SENSORS_PATH = "/v1.0/security/identities/sensors"


@pytest.fixture
def graph(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[GraphEmulator]:
    monkeypatch.setenv("ATP_BOT_TEST_GRAPH_SECRET", GRAPH_SECRET)
    monkeypatch.setenv("ATP_BOT_TEST_WINRM", WINRM_PASSWORD)
    monkeypatch.delenv("ATP_BOT_STORE_KEY", raising=False)
    with GraphEmulator(tmp_path / "graph", client_secret=GRAPH_SECRET, page_size=2) as emulator:
        yield emulator


@pytest.fixture
def winrm() -> Iterator[WinRMEmulator]:
    with WinRMEmulator(username=WINRM_USER, password=WINRM_PASSWORD) as emulator:
        yield emulator


def fleet_runtime(
    tmp_path: Path,
    graph: GraphEmulator,
    hosts: WinRMEmulator | None,
    notifier: RecordingNotifier,
    winrm: str = "",
) -> MonitorContext:
    """The runtime `atp-bot run` builds over `hosts` as `[[sensors]]` (`winrm`: more `[winrm]` lines),
    its Graph list read afresh each cycle (not cached 60 s)."""
    settings = monitor_settings(tmp_path, hosts, extra=graph_toml(graph), winrm=winrm)
    runtime = make_runtime(settings, notifier, Clock())
    runtime.changes.fleet = GraphFleet(settings, cache_seconds=0)
    return runtime


def health_notices(notifier: RecordingNotifier) -> list[tuple[str, tuple[str, ...], bool]]:
    found: list[SensorHealthNotice] = notifier.of("post_sensor_health")
    return [(n.sensor, n.problems, n.recovered) for n in found]


def test_graph_sensor_health_is_alerted_once_per_problem_then_its_recovery(
    tmp_path: Path, graph: GraphEmulator, winrm: WinRMEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    winrm.add_host(Host.sensor("dc1"))
    graph.add_sensor("DC1")
    dc3 = graph.add_sensor("DC3", deployment_status="startFailure", health_status="notHealthyHigh")
    graph.add_sensor("DC5", deployment_status="outdated", health_status="notHealthyLow")  # shown, not alerted
    notifier = RecordingNotifier()
    runtime = fleet_runtime(tmp_path, graph, winrm, notifier)

    first = run_monitor_cycle(runtime)
    assert first.opened == ()  # not a credential incident of the account
    assert health_notices(notifier) == [
        ("DC3", ("deploymentStatus startFailure", "healthStatus notHealthyHigh"), False)
    ]
    run_monitor_cycle(runtime)
    assert len(notifier.of("post_sensor_health")) == 1  # still failing: nothing new to say

    graph.update_sensor(dc3, deploymentStatus="disconnected")
    run_monitor_cycle(runtime)
    assert health_notices(notifier)[1:] == [("DC3", ("deploymentStatus disconnected",), False)]

    graph.fail_next(SENSORS_PATH, 500)
    assert run_monitor_cycle(runtime).fleet_error is not None  # Graph did not answer: nothing changes
    graph.update_sensor(dc3, deploymentStatus="upToDate", healthStatus="healthy")
    run_monitor_cycle(runtime)
    run_monitor_cycle(runtime)
    recovered = notifier.of("post_sensor_health")[2:]
    assert [(n.sensor, n.recovered) for n in recovered] == [("DC3", True)]
    assert recovered[0].problems == ("deploymentStatus disconnected", "healthStatus notHealthyHigh")
    assert render_sensor_health(recovered[0]).startswith("sensor DC3 is healthy again")
    assert [r for r in alert_rows(runtime) if r[1].startswith("sensor_")] == [
        ("failed", "sensor_unhealthy", None),
        ("failed", "sensor_unhealthy", None),
        ("ok", "sensor_healthy", None),
    ]
    text = sensor_health_message(notifier.of("post_sensor_health")[0])
    assert "startFailure" in text and "notHealthyHigh" in text  # Graph's spelling
    told = repr(notifier.calls) + repr(runtime.changes.audit.recent(limit=200)) + caplog.text
    assert GRAPH_SECRET not in told and not any(token in told for token in graph.issued_tokens)


def test_graph_only_sensors_get_winrm_checks_through_the_endpoint_template(
    tmp_path: Path, graph: GraphEmulator, winrm: WinRMEmulator
) -> None:
    winrm.add_host(Host.sensor("localhost"))
    port = winrm.endpoint("localhost").rsplit(":", 1)[1].split("/")[0]
    graph.add_sensor("localhost", domain="localhost", dns_names=("localhost",))
    template = f'endpoint_template = "http://{{dns_name}}:{port}/wsman"\nallowed_domains = ["localhost"]\n'
    notifier = RecordingNotifier()
    runtime = fleet_runtime(tmp_path, graph, None, notifier, winrm=template)  # no [[sensors]] at all
    clock = runtime.clock
    assert isinstance(clock, Clock)

    assert [r.name for r in run_monitor_cycle(runtime).results] == ["localhost"]
    credential_errors(winrm, "localhost", clock, 2)
    opened = run_monitor_cycle(runtime)
    assert opened.opened == ("svc",)
    (incident,) = notifier.of("post_incident")
    assert [(s.sensor, s.credential_errors) for s in incident.sensors] == [("localhost", 2)]

    winrm.host("localhost").set_service("AATPSensor", "Stopped")
    run_monitor_cycle(runtime)
    (button,) = [a for a in notifier.of("update_incident")[-1][1].actions if a.kind == "start_service"]
    assert (button.sensor, button.service) == ("localhost", "AATPSensor")
    graph_sensors, _ = runtime.changes.fleet.sensors()
    report = start_sensor_service(
        runtime.settings, runtime.changes.audit, "localhost", "AATPSensor", "slack:U1", graph_sensors
    )
    assert report.ok, report.message


def test_a_unified_sensor_without_its_process_is_reported_as_such(
    tmp_path: Path, graph: GraphEmulator, winrm: WinRMEmulator
) -> None:
    winrm.add_host(Host.sensor("dc6"))
    winrm.host("dc6").set_service("AATPSensor", None)  # neither the classic service nor SenseIdentity
    graph.add_sensor("DC6", version=UNIFIED)
    notifier = RecordingNotifier()
    runtime = fleet_runtime(tmp_path, graph, winrm, notifier)

    assert run_monitor_cycle(runtime).opened == ()  # never "AATPSensor not installed"
    assert notifier.of("post_incident") == []
    assert health_notices(notifier) == [("dc6", ("the SenseIdentity process is not running",), False)]
    graph.fail_next(SENSORS_PATH, 500)  # Graph does not answer: the sensor is still known as unified
    assert run_monitor_cycle(runtime).opened == ()

    winrm.set_fault("dc6", "http500")  # the host does not answer: its problem is kept, not recovered
    run_monitor_cycle(runtime)
    winrm.set_fault("dc6", None)
    run_monitor_cycle(runtime)
    assert len(notifier.of("post_sensor_health")) == 1

    winrm.host("dc6").processes.add("SenseIdentity")
    run_monitor_cycle(runtime)
    assert health_notices(notifier)[1:] == [("dc6", ("the SenseIdentity process is not running",), True)]


def test_the_monitor_and_start_service_never_contact_a_hostile_graph_name(
    tmp_path: Path, graph: GraphEmulator, winrm: WinRMEmulator
) -> None:
    """Graph names the WinRM emulator's listener (`127.0.0.1:<port>`); the template would address it."""
    winrm.add_host(Host.sensor("localhost"))
    port = winrm.endpoint("localhost").rsplit(":", 1)[1].split("/")[0]
    graph.add_sensor("EVIL", dns_names=(f"127.0.0.1:{port}",))
    notifier = RecordingNotifier()
    template = 'endpoint_template = "http://{dns_name}/wsman"\n'
    runtime = fleet_runtime(tmp_path, graph, None, notifier, winrm=template)

    assert run_monitor_cycle(runtime).results == ()
    graph_sensors, _ = runtime.changes.fleet.sensors()
    report = start_sensor_service(
        runtime.settings, runtime.changes.audit, "EVIL", "AATPSensor", "slack:U1", graph_sensors
    )
    assert not report.ok
    counters = winrm.host("localhost").counters
    assert (counters.requests, dict(counters.round_trips)) == (0, {})
