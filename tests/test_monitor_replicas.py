"""The monitor's state shared by two replicas (one PostgreSQL): a new leader goes on from the old one's
log positions, updates and closes its alert, delivers what it left undelivered, and two cycles never run
at once."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomli_w

from bot.change import open_changes
from bot.monitor.context import MonitorContext
from bot.monitor.cycle import CycleResult, run_monitor_cycle
from lab.postgres import PostgresCluster
from lab.winrm.model import Host
from lab.winrm.server import WinRMEmulator
from tests.monitor_tools import (
    WINRM_PASSWORD,
    WINRM_USER,
    Clock,
    RecordingNotifier,
    credential_errors,
    monitor_settings,
)
from tests.peers import postgres_cluster
from tests.replicas import replica_tables

DB_PASSWORD = "monitor-replicas-db-58"
DB_PASSWORD_ENV = "ATP_TEST_MONITOR_DB"


@pytest.fixture(scope="module")
def cluster() -> Iterator[PostgresCluster]:
    yield from postgres_cluster(DB_PASSWORD)


@pytest.fixture
def sensors(monkeypatch: pytest.MonkeyPatch) -> Iterator[WinRMEmulator]:
    monkeypatch.setenv("ATP_BOT_TEST_WINRM", WINRM_PASSWORD)
    monkeypatch.setenv(DB_PASSWORD_ENV, DB_PASSWORD)
    with WinRMEmulator(username=WINRM_USER, password=WINRM_PASSWORD) as emulator:
        emulator.add_host(Host.sensor("sensor01"))
        emulator.add_host(Host.sensor("sensor02"))
        yield emulator


@pytest.fixture
def database(cluster: PostgresCluster, request: pytest.FixtureRequest) -> str:
    """A database of its own for each test, so that no state is left from another."""
    name = request.node.name.replace("[", "_").replace("]", "")[:60]
    return cluster.create_database(name)


class Replica:
    def __init__(self, tmp_path: Path, name: str, sensors: WinRMEmulator, db_url: str, clock: Clock) -> None:
        settings = monitor_settings(
            tmp_path / name,
            sensors,
            extra=tomli_w.dumps(replica_tables(db_url, DB_PASSWORD_ENV, poll=0.2)),
        )
        changes = open_changes(settings)
        self.notifier = RecordingNotifier()
        self.runtime = MonitorContext.create(settings, self.notifier, changes, clock=clock)

    def cycle(self) -> CycleResult:
        return run_monitor_cycle(self.runtime)


@pytest.fixture
def replicas(
    tmp_path: Path, sensors: WinRMEmulator, database: str
) -> Iterator[tuple[Replica, Replica, Clock]]:
    clock = Clock()
    pair = (
        Replica(tmp_path, "a", sensors, database, clock),
        Replica(tmp_path, "b", sensors, database, clock),
    )
    yield pair[0], pair[1], clock
    for replica in pair:
        replica.runtime.memory.close()


def test_a_new_leader_goes_on_with_the_old_leaders_alert(
    replicas: tuple[Replica, Replica, Clock], sensors: WinRMEmulator
) -> None:
    a, b, clock = replicas
    credential_errors(sensors, "sensor01", clock, 3)
    assert a.cycle().opened == ("svc",)
    ((_, posted),) = a.notifier.calls

    clock.advance(minutes=5)  # a stepped down; b leads now
    credential_errors(sensors, "sensor01", clock, 2)
    assert b.cycle().updated == ("svc",)
    ((name, (ref, updated)),) = b.notifier.calls
    assert name == "update_incident" and ref.ts == "1764050000.000001"  # a's message, not a new one
    assert updated.id == posted.id
    assert [(s.sensor, s.credential_errors) for s in updated.sensors] == [("sensor01", 5)]  # 3 + 2, once

    clock.advance(minutes=5)
    assert b.cycle().closed == ("svc",)
    assert b.notifier.names() == ["update_incident", "close_incident"]
    assert a.runtime.memory.incidents() == {} and a.notifier.names() == ["post_incident"]


def test_what_one_replica_could_not_deliver_the_other_delivers(
    replicas: tuple[Replica, Replica, Clock], sensors: WinRMEmulator
) -> None:
    a, b, clock = replicas
    a.notifier.failing = True  # Slack unreachable from a
    credential_errors(sensors, "sensor02", clock, 1)
    assert not a.cycle().delivered
    clock.advance(minutes=5)
    credential_errors(sensors, "sensor02", clock, 1)  # still failing: the incident stays open
    assert b.cycle().delivered
    ((name, incident),) = b.notifier.calls
    assert name == "post_incident" and incident.sensors[0].credential_errors == 2
    (stored,) = b.runtime.memory.incidents().values()
    assert stored.delivered and stored.ref is not None


def test_a_cycle_waits_while_another_replica_runs_one(replicas: tuple[Replica, Replica, Clock]) -> None:
    """Across processes only the shared lock keeps two cycles apart (each process has its own thread
    lock, so each replica here gets a fresh one): two at once would count the same errors twice."""
    a, b, _ = replicas
    order: list[str] = []
    entered = threading.Event()

    def first() -> None:
        with a.runtime.memory.exclusive("cycle", threading.Lock()):
            entered.set()
            time.sleep(1)
            order.append("a finished")

    thread = threading.Thread(target=first)
    thread.start()
    assert entered.wait(10)
    with b.runtime.memory.exclusive("cycle", threading.Lock()):
        order.append("b started")
    with b.runtime.memory.exclusive("sending", threading.Lock()):  # another name is not held
        pass
    thread.join(timeout=10)
    assert order == ["a finished", "b started"]
