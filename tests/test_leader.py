"""Two replicas, one scheduler: the PostgreSQL advisory-lock leader election (a throwaway cluster)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url

from bot.config import ConfigError, parse_settings
from bot.leader import LeaderElection
from bot.scheduler import jobstore_url
from lab.postgres import PostgresCluster, server_binaries
from tests.peers import peer_missing
from tests.slack_lab import wait_for

PASSWORD = "pg-leader-password-73"
POLL = 0.2


@pytest.fixture(scope="module")
def cluster() -> Iterator[PostgresCluster]:
    if server_binaries() is None:
        peer_missing("PostgreSQL server binaries are not installed (Debian package: postgresql)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        peer_missing("the psycopg driver is not installed (pip install 'psycopg[binary]')")
    with PostgresCluster(PASSWORD) as running:
        yield running


@pytest.fixture
def lock_url(cluster: PostgresCluster) -> URL:
    return make_url(cluster.url).set(password=PASSWORD)


class Replica:
    """One election plus a record of its callbacks, the way `atp-bot run` wires them."""

    def __init__(self, url: URL, name: str) -> None:
        self.events: list[str] = []
        self.election = LeaderElection(
            url,
            poll_seconds=POLL,
            on_elected=lambda: self.events.append("elected"),
            on_demoted=lambda: self.events.append("demoted"),
            name=name,
        )


@pytest.fixture
def replicas(lock_url: URL, request: pytest.FixtureRequest) -> Iterator[Callable[[], Replica]]:
    started: list[Replica] = []
    name = f"test:{request.node.name}"

    def start() -> Replica:
        replica = Replica(lock_url, name)
        replica.election.start()
        started.append(replica)
        return replica

    yield start
    for replica in started:
        replica.election.stop()


def leaders(*replicas: Replica) -> list[Replica]:
    return [r for r in replicas if r.election.is_leader]


def test_exactly_one_leader_and_a_clean_stop_hands_over(replicas: Callable[[], Replica]) -> None:
    first, second = replicas(), replicas()
    leader = wait_for(lambda: leaders(first, second) or None, timeout=10)[0]
    time.sleep(5 * POLL)  # the standby keeps trying and keeps failing
    assert leaders(first, second) == [leader]
    standby = second if leader is first else first
    assert standby.events == []
    assert standby.election.role == "standby"
    assert standby.election.reachable

    started = time.monotonic()
    leader.election.stop()
    assert leader.events == ["elected", "demoted"]
    assert standby.election.wait_elected(timeout=10)
    assert time.monotonic() - started < 4 * POLL + 1  # poll + fencing wait (2 polls) + margin
    assert standby.events == ["elected"]


def test_a_leader_whose_session_is_killed_steps_down_and_the_standby_takes_over(
    replicas: Callable[[], Replica], lock_url: URL
) -> None:
    first, second = replicas(), replicas()
    leader = wait_for(lambda: leaders(first, second) or None, timeout=10)[0]
    standby = second if leader is first else first
    admin = create_engine(lock_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            pids = conn.execute(
                text(
                    "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
                    " AND pid <> pg_backend_pid()"
                )
            ).scalars()
            for pid in list(pids):
                conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    finally:
        admin.dispose()
    wait_for(lambda: ("demoted" in leader.events) or None, timeout=10)
    assert standby.election.wait_elected(timeout=10)
    assert leaders(first, second) == [standby]  # the old leader tries again, as a standby
    assert leader.events == ["elected", "demoted"]


def test_an_unreachable_database_is_reported_and_nobody_leads(cluster: PostgresCluster) -> None:
    url = make_url(cluster.url).set(password=PASSWORD, port=_closed_port())
    replica = Replica(url, "test:unreachable")
    replica.election.start()
    try:
        time.sleep(3 * POLL)
        assert not replica.election.is_leader
        assert not replica.election.reachable
    finally:
        replica.election.stop()
    assert replica.events == []


def test_a_failing_on_elected_steps_down_and_retries(lock_url: URL) -> None:
    calls = threading.Semaphore(0)

    def broken() -> None:
        calls.release()
        raise RuntimeError("scheduler could not resume")

    election = LeaderElection(
        lock_url, poll_seconds=POLL, on_elected=broken, on_demoted=lambda: None, name="test:broken"
    )
    election.start()
    try:
        assert calls.acquire(timeout=10)
        assert calls.acquire(timeout=10)  # it released the lock and took it again
    finally:
        election.stop()
    assert not election.is_leader


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


ACCOUNT = '[[accounts]]\nid = "corp"\nusername = "svc@corp.test"\ndomain_controllers = ["ldaps://dc1"]\n'


@pytest.mark.parametrize(
    ("scheduler", "expected"),
    [
        (
            'leader_lock_url = "postgresql+psycopg://atp@db/atp"',
            "scheduler: Value error, leader_lock_url (several replicas) needs a jobstore_url on a shared",
        ),
        (
            'leader_lock_url = "postgresql+psycopg://atp@db/atp"\njobstore_url = "sqlite:////var/jobs.sqlite"',
            "scheduler: Value error, leader_lock_url (several replicas) needs a jobstore_url on a shared",
        ),
        (
            'leader_lock_url = "sqlite:////var/lock.sqlite"',
            "scheduler.leader_lock_url: must be a PostgreSQL URL",
        ),
        (
            'leader_lock_url = "postgresql+psycopg://atp:hunter2@db/atp"',
            "scheduler.leader_lock_url: must not contain a password: use leader_lock_password_env",
        ),
        (
            'jobstore_url = "postgresql+psycopg://atp:hunter2@db/atp"',
            "scheduler.jobstore_url: must not contain a password: use jobstore_password_env",
        ),
        (
            'jobstore_password_env = "A"\njobstore_password_file = "/run/a"',
            "scheduler: Value error, set jobstore_password_env or jobstore_password_file, not both",
        ),
        ("leader_poll_seconds = 0", "scheduler.leader_poll_seconds: Input should be greater than or equal"),
    ],
)
def test_replica_settings_are_validated(scheduler: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_settings(f"{ACCOUNT}[scheduler]\n{scheduler}\n")
    assert any(
        problem.startswith(expected.replace("Value error, ", "")) for problem in caught.value.problems
    ), caught.value.problems
    assert "hunter2" not in str(caught.value)


def test_replica_passwords_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = parse_settings(
        f"{ACCOUNT}[scheduler]\n"
        'jobstore_url = "postgresql+psycopg://atp@db/atp"\njobstore_password_env = "ATP_TEST_JOBS_PW"\n'
        'leader_lock_url = "postgresql+psycopg://atp@db/atp"\nleader_lock_password_env = "ATP_TEST_LOCK_PW"\n'
    )
    monkeypatch.setenv("ATP_TEST_JOBS_PW", "jobs-secret")
    with pytest.raises(ConfigError, match="environment variable ATP_TEST_LOCK_PW is not set"):
        settings.scheduler.leader_lock_password()
    assert jobstore_url(settings).password == "jobs-secret"
    assert "jobs-secret" not in repr(jobstore_url(settings))
