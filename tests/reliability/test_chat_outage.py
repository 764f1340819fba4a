"""An alert survives a chat outage: the real Slack client (slack_sdk, its retry handlers) and notifier
against the Slack emulator answering 503 on the test's clock, the WinRM emulator, the monitor's own state.

Credential errors found while Slack is down, then a clean cycle (still down) that closes the incident:
when Slack answers again, the team gets exactly one message that tells the whole story (how many errors,
where, when, clean since when), never a recovery reply to an alert that was never posted, and nothing
more after further cycles, a restart on the same state, or with two replicas sharing PostgreSQL.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import tomli_w
from pydantic import SecretStr

from bot.change import open_changes
from bot.monitor.context import MonitorContext
from bot.monitor.cycle import run_monitor_cycle
from bot.slack.client import build_client
from commands.alerts import SlackNotifier
from lab.postgres import PostgresCluster
from lab.slack import SlackEmulator
from lab.slack.workspace import Workspace
from lab.winrm.model import Host
from lab.winrm.server import WinRMEmulator
from tests.monitor_tools import (
    WINRM_PASSWORD,
    WINRM_USER,
    Clock,
    credential_errors,
    make_runtime,
    monitor_settings,
)
from tests.peers import postgres_cluster
from tests.replicas import replica_tables

OPS = "C0OPS"
OUTAGE_SECONDS = 90
DB_PASSWORD = "chat-outage-db-73"
DB_PASSWORD_ENV = "ATP_TEST_CHAT_OUTAGE_DB"
# The one message the team must get: found, how many, when, clean since when.
STORY = (
    "*Resolved*: account *svc*: 3 credential error(s) on *cha01* at 2026-11-25 23:45 UTC; "
    "clean since 2026-11-25 23:46 UTC."
)


@pytest.fixture
def sensors(monkeypatch: pytest.MonkeyPatch) -> Iterator[WinRMEmulator]:
    monkeypatch.setenv("ATP_BOT_TEST_WINRM", WINRM_PASSWORD)
    monkeypatch.setenv(DB_PASSWORD_ENV, DB_PASSWORD)
    monkeypatch.delenv("ATP_BOT_STORE_KEY", raising=False)
    with WinRMEmulator(username=WINRM_USER, password=WINRM_PASSWORD) as emulator:
        emulator.add_host(Host.sensor("cha01"))
        emulator.add_host(Host.sensor("cha02"))
        yield emulator


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 11, 25, 23, 45, tzinfo=UTC))


@pytest.fixture
def slack(clock: Clock) -> Iterator[SlackEmulator]:
    """The emulator on the test's clock: its outage lasts 90 s of that clock, not of the wall's."""
    with SlackEmulator(workspace=Workspace(clock=lambda: clock.now.timestamp())) as emulator:
        yield emulator


def notifier(slack: SlackEmulator) -> SlackNotifier:
    return SlackNotifier(build_client(slack.api_url, SecretStr(slack.bot_token)), OPS)


def errors_found_and_cleared_while_slack_is_down(
    sensors: WinRMEmulator, slack: SlackEmulator, clock: Clock, first: MonitorContext, second: MonitorContext
) -> None:
    """23:45: three errors on cha01, Slack down for 90 s; 23:46: nothing new, still down; 23:47: up."""
    credential_errors(sensors, "cha01", clock, 3)
    slack.outage(OUTAGE_SECONDS)
    found = run_monitor_cycle(first)
    assert found.opened == ("svc",) and not found.delivered
    clock.advance(minutes=1)
    cleared = run_monitor_cycle(second)
    assert cleared.closed == ("svc",) and not cleared.delivered
    refused = slack.calls("chat.postMessage")
    assert refused and {c.status for c in refused} == {503}
    assert slack.messages(OPS) == []
    clock.advance(minutes=1)


def assert_told_once(slack: SlackEmulator) -> None:
    (message,) = slack.messages(OPS)
    assert message.thread_ts is None
    assert STORY in message.text
    assert [c.method for c in slack.calls() if c.status == 200] == ["chat.postMessage"]


def test_an_incident_over_before_slack_returns_is_told_once_with_its_whole_story(
    sensors: WinRMEmulator, slack: SlackEmulator, clock: Clock, tmp_path: Path
) -> None:
    settings = monitor_settings(tmp_path, sensors)
    runtime = make_runtime(settings, notifier(slack), clock)
    errors_found_and_cleared_while_slack_is_down(sensors, slack, clock, runtime, runtime)

    assert run_monitor_cycle(runtime).delivered
    assert_told_once(slack)
    assert runtime.memory.incidents() == {}
    for _ in range(3):
        clock.advance(minutes=5)
        assert run_monitor_cycle(runtime).delivered
    runtime.memory.close()

    restarted = make_runtime(settings, notifier(slack), clock)  # a new process on the same state
    clock.advance(minutes=5)
    assert run_monitor_cycle(restarted).delivered
    restarted.memory.close()
    assert_told_once(slack)


@pytest.fixture(scope="module")
def cluster() -> Iterator[PostgresCluster]:
    yield from postgres_cluster(DB_PASSWORD)


def replica(
    tmp_path: Path, name: str, sensors: WinRMEmulator, slack: SlackEmulator, db_url: str, clock: Clock
) -> MonitorContext:
    settings = monitor_settings(
        tmp_path / name, sensors, extra=tomli_w.dumps(replica_tables(db_url, DB_PASSWORD_ENV, poll=0.2))
    )
    return MonitorContext.create(settings, notifier(slack), open_changes(settings), clock=clock)


def test_two_replicas_tell_an_incident_over_during_an_outage_once(
    sensors: WinRMEmulator, slack: SlackEmulator, clock: Clock, tmp_path: Path, cluster: PostgresCluster
) -> None:
    database = cluster.create_database("chat_outage_replicas")
    a, b = (replica(tmp_path, name, sensors, slack, database, clock) for name in ("a", "b"))
    try:
        errors_found_and_cleared_while_slack_is_down(sensors, slack, clock, a, b)  # b took over from a

        both = [threading.Thread(target=run_monitor_cycle, args=(r,)) for r in (a, b)]  # Slack is back
        for thread in both:
            thread.start()
        for thread in both:
            thread.join(timeout=120)
        assert_told_once(slack)
        for runtime in (b, a, b):
            clock.advance(minutes=5)
            assert run_monitor_cycle(runtime).delivered
        assert_told_once(slack)
    finally:
        a.memory.close()
        b.memory.close()
