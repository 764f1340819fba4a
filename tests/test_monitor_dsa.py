"""The monitor tells the channel once when a directory service account becomes removable (msal/requests
against the Graph emulator, the real monitor cycle, its memory across a restart)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from bot.fleet import GraphFleet
from bot.monitor.context import MonitorContext
from bot.monitor.cycle import run_monitor_cycle
from bot.monitor.models import DsaRemovableNotice
from bot.monitor.notify import LogNotifier
from bot.monitor.render import render_dsa_removable
from bot.slack.client import build_client
from commands.alerts import SlackNotifier
from lab.graph import GraphEmulator
from lab.slack import SlackEmulator
from tests.monitor_tools import (
    WINRM_PASSWORD,
    Clock,
    RecordingNotifier,
    alert_rows,
    make_runtime,
    monitor_settings,
)
from tests.test_sensor_inventory import GRAPH_SECRET, graph_toml

UNIFIED = "3.0.1234.0"
CLASSIC = "2.250.18972.56743"
SENSORS_PATH = "/v1.0/security/identities/sensors"


@pytest.fixture
def graph(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[GraphEmulator]:
    monkeypatch.setenv("ATP_BOT_TEST_GRAPH_SECRET", GRAPH_SECRET)
    monkeypatch.setenv("ATP_BOT_TEST_WINRM", WINRM_PASSWORD)
    monkeypatch.delenv("ATP_BOT_STORE_KEY", raising=False)
    with GraphEmulator(tmp_path / "graph", client_secret=GRAPH_SECRET, page_size=2) as emulator:
        yield emulator


def runtime_of(
    tmp_path: Path, graph: GraphEmulator, notifier: RecordingNotifier, clock: Clock
) -> MonitorContext:
    """What `atp-bot run` builds over the state directory (a second call is a restart); Graph read afresh
    each cycle."""
    settings = monitor_settings(tmp_path, None, extra=graph_toml(graph))
    runtime = make_runtime(settings, notifier, clock)
    runtime.changes.fleet = GraphFleet(settings, cache_seconds=0)
    return runtime


def removable(notifier: RecordingNotifier) -> list[DsaRemovableNotice]:
    return notifier.of("post_dsa_removable")


def test_an_account_becoming_removable_is_told_once_across_cycles_and_a_restart(
    tmp_path: Path, graph: GraphEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    dc1 = graph.add_sensor("DC1", version=CLASSIC)
    graph.add_sensor("DC2", version=UNIFIED)
    adfs = graph.add_sensor("ADFS1", sensor_type="adfsIntegrated", version=CLASSIC)
    notifier, clock = RecordingNotifier(), Clock()
    runtime = runtime_of(tmp_path, graph, notifier, clock)
    run_monitor_cycle(runtime)
    assert removable(notifier) == []  # DC1 and ADFS1 still use it

    graph.update_sensor(dc1, version=UNIFIED)
    clock.advance(minutes=5)
    run_monitor_cycle(runtime)
    assert removable(notifier) == []  # ADFS1 still does
    graph.update_sensor(adfs, version=UNIFIED)
    clock.advance(minutes=5)
    run_monitor_cycle(runtime)
    told = removable(notifier)
    assert [(n.account_id, n.domains, n.unified_sensors, n.at) for n in told] == [
        ("svc", ("contoso.test",), ("DC1", "DC2", "ADFS1"), clock.now)
    ]
    for _ in range(2):
        clock.advance(minutes=5)
        run_monitor_cycle(runtime)
    graph.fail_next(SENSORS_PATH, 500)
    assert run_monitor_cycle(runtime).fleet_error is not None  # unknown this cycle: nothing changes
    restarted = runtime_of(tmp_path, graph, notifier, clock)
    run_monitor_cycle(restarted)
    assert len(removable(notifier)) == 1
    assert [r for r in alert_rows(restarted) if r[1] == "dsa_removable"] == [("ok", "dsa_removable", "svc")]
    assert GRAPH_SECRET not in repr(notifier.calls) + caplog.text


def test_an_account_needed_again_then_removable_again_is_told_again(
    tmp_path: Path, graph: GraphEmulator
) -> None:
    graph.add_sensor("DC2", version=UNIFIED)
    notifier, clock = RecordingNotifier(), Clock()
    runtime = runtime_of(tmp_path, graph, notifier, clock)
    run_monitor_cycle(runtime)
    assert len(removable(notifier)) == 1  # removable when first seen: told
    new = graph.add_sensor("CS1", sensor_type="adcsIntegrated", version=CLASSIC)
    run_monitor_cycle(runtime)
    assert len(removable(notifier)) == 1
    graph.update_sensor(new, version=UNIFIED)
    run_monitor_cycle(runtime)
    run_monitor_cycle(runtime)
    assert len(removable(notifier)) == 2


def test_a_notice_slack_is_down_for_is_kept_and_sent_once(tmp_path: Path, graph: GraphEmulator) -> None:
    graph.add_sensor("DC2", version=UNIFIED)
    notifier, clock = RecordingNotifier(), Clock()
    runtime = runtime_of(tmp_path, graph, notifier, clock)
    notifier.failing = True
    assert run_monitor_cycle(runtime).delivered is False
    notifier.failing = False
    run_monitor_cycle(runtime)
    run_monitor_cycle(runtime)
    assert len(removable(notifier)) == 1


def test_the_notice_names_the_portal_step_in_slack_and_the_log(caplog: pytest.LogCaptureFixture) -> None:
    notice = DsaRemovableNotice(
        account_id="svc", domains=("contoso.test",), unified_sensors=("DC2", "<!here>"), at=Clock().now
    )
    text = render_dsa_removable(notice)
    assert "svc is no longer used" in text and "Settings > Identities > Directory service accounts" in text
    caplog.set_level(logging.WARNING)
    LogNotifier().post_dsa_removable(notice)
    assert "disable the AD account" in caplog.text

    with SlackEmulator() as slack:
        SlackNotifier(build_client(slack.api_url, SecretStr(slack.bot_token)), "C0OPS").post_dsa_removable(
            notice
        )
        posted = str(slack.calls("chat.postMessage")[0].args["text"])
    assert "*svc*" in posted and "Directory service accounts" in posted
    assert "<!here>" not in posted  # a sensor name from Graph never pings the channel
