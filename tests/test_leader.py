"""Two replicas, one scheduler: the PostgreSQL advisory-lock leader election (a throwaway cluster)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.date import DateTrigger
from pydantic import SecretStr
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url

from bot.audit import open_audit
from bot.change import ChangeStatus, PasswordChanges
from bot.config import AccountConfig, ConfigError, Settings, parse_settings
from bot.directory import ConnectionTestResult, Outcome, Reason
from bot.directory.lockout import (
    GUARD_FILE,
    AccountBusy,
    AccountLocks,
    LockoutGuard,
    SharedLockUnavailable,
)
from bot.infra.advisory import AdvisoryLocks
from bot.infra.leader import LeaderElection
from bot.infra.state_dir import state_dir
from bot.monitor.models import MessageRef
from bot.monitor.scheduler import RECHECK_PREFIX, jobstore_url, recheck_job
from bot.store import open_store
from bot.store.embedded import init_embedded_store
from lab.postgres import PostgresCluster
from lab.slack import SlackEmulator
from tests.peers import postgres_cluster
from tests.replicas import replica_tables
from tests.slack_lab import wait_for

PASSWORD = "pg-leader-password-73"
POLL = 0.2


@pytest.fixture(scope="module")
def cluster() -> Iterator[PostgresCluster]:
    yield from postgres_cluster(PASSWORD)


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
        ("leader_poll_seconds = 0", "scheduler.leader_poll_seconds: must be at least 0.1"),
    ],
)
def test_replica_settings_are_validated(scheduler: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_settings(f"{ACCOUNT}[scheduler]\n{scheduler}\n")
    assert any(
        problem.startswith(expected.replace("Value error, ", "")) for problem in caught.value.problems
    ), caught.value.problems
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"store": {"backend": "embedded"}}, 'store.backend: "embedded" keeps the credential in one replica'),
        (
            {"audit": {}},
            "audit.url: with [scheduler] leader_lock_url (several replicas) the audit trail",
        ),
        ({"audit": {"url": "sqlite:////var/lib/atp-bot/audit.sqlite"}}, "audit.url: with [scheduler]"),
    ],
)
def test_replicas_refuse_what_they_would_not_share(change: dict[str, Any], expected: str) -> None:
    tables = replica_tables("postgresql+psycopg://atp@db/atp", "ATP_TEST_DB_PW", POLL) | change
    with pytest.raises(ConfigError) as caught:
        parse_settings(ACCOUNT + tomli_w.dumps(tables))
    assert [p[: len(expected)] for p in caught.value.problems] == [expected]


def test_replica_passwords_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    tables = replica_tables("postgresql+psycopg://atp@db/atp", "ATP_TEST_LOCK_PW", POLL)
    tables["scheduler"]["jobstore_password_env"] = "ATP_TEST_JOBS_PW"
    settings = parse_settings(ACCOUNT + tomli_w.dumps(tables))
    monkeypatch.setenv("ATP_TEST_JOBS_PW", "jobs-secret")
    with pytest.raises(ConfigError, match="environment variable ATP_TEST_LOCK_PW is not set"):
        settings.scheduler.leader_lock()
    assert jobstore_url(settings).password == "jobs-secret"
    assert "jobs-secret" not in repr(jobstore_url(settings))


# --- end to end: two `atp-bot run` processes, one Slack workspace, one PostgreSQL ------------------------

DB_PASSWORD_ENV = "ATP_TEST_REPLICA_DB_PASSWORD"
THREADS = [MessageRef(channel="C0OPS", ts=f"1700000000.00010{n}") for n in range(2)]


def _replica_config(tmp_path: Path, name: str, db_url: str, api_url: str) -> tuple[Path, str]:
    """One replica's config (its own state directory and health port) and its /healthz base URL."""
    port = _closed_port()
    path = tmp_path / f"{name}.toml"
    tables = replica_tables(db_url, DB_PASSWORD_ENV, POLL)
    tables["scheduler"]["expiry_check_time"] = "24h"
    tables |= {
        "slack": {"api_url": api_url, "channel": "C0OPS", "allowed_users": ["U0ALICE"]},
        "observability": {"listen": f"127.0.0.1:{port}"},
    }
    path.write_text(f'state_dir = "{tmp_path / name}"\n{ACCOUNT}{tomli_w.dumps(tables)}', encoding="utf-8")
    return path, f"http://127.0.0.1:{port}"


def _health(base: str) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"{base}/healthz", timeout=2) as answer:  # noqa: S310 - loopback
            body: dict[str, Any] = json.loads(answer.read())
            return body
    except (urllib.error.URLError, OSError):
        return None


def _roles(bases: list[str]) -> list[str] | None:
    """Each replica's role once all are healthy and exactly one leads; else None."""
    answers = [_health(base) for base in bases]
    roles = [str(a.get("role")) for a in answers if a is not None and a["status"] == "ok"]
    return roles if sorted(roles) == ["leader", "standby"] else None


def _add_recheck(url: URL, thread: MessageRef, due: datetime) -> None:
    """Put a re-check into the shared job store from outside, as a standby does after a change."""
    aps = BackgroundScheduler(jobstores={"default": SQLAlchemyJobStore(url=url)}, timezone=UTC)
    aps.start(paused=True)
    aps.add_job(
        recheck_job,
        trigger=DateTrigger(run_date=due, timezone=UTC),
        args=["corp", thread.model_dump(), datetime.now(UTC).isoformat(), 2],
        id=f"{RECHECK_PREFIX}corp:{thread.ts}",
        misfire_grace_time=3600,
    )
    aps.remove_jobstore("default", shutdown=True)
    aps.shutdown(wait=False)


def _rechecks(emulator: SlackEmulator, thread: MessageRef) -> list[str]:
    return [m.text for m in emulator.messages(thread.channel) if m.thread_ts == thread.ts]


def test_two_replicas_serve_slack_and_one_runs_the_scheduler(
    cluster: PostgresCluster, tmp_path: Path
) -> None:
    db_url = cluster.create_database("replicas")
    env = {**os.environ, DB_PASSWORD_ENV: PASSWORD}
    with SlackEmulator() as emulator:
        env |= {"SLACK_BOT_TOKEN": emulator.bot_token, "SLACK_APP_TOKEN": emulator.app_token}
        configs = [_replica_config(tmp_path, name, db_url, emulator.api_url) for name in ("a", "b")]
        bots = [
            subprocess.Popen(
                [sys.executable, "-m", "bot", "--config", str(path), "run"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for path, _base in configs
        ]
        try:
            wait_for(lambda: emulator.connected_apps == 2 or None, timeout=30)
            bases = [base for _path, base in configs]
            roles = wait_for(lambda: _roles(bases), timeout=20)
            leader = roles.index("leader")
            standby = 1 - leader
            metrics = urllib.request.urlopen(f"{bases[standby]}/metrics", timeout=5).read().decode()  # noqa: S310
            assert "atp_bot_scheduler_leader 0.0" in metrics
            assert _health(bases[standby]) == {
                "status": "ok",
                "checks": {"slack": True, "scheduler": True, "store": True},
                "role": "standby",
                "leader_lock": "reachable",
            }
            for _ in range(2):  # one envelope per connection, round robin: both replicas answer
                assert "`/atp help`" in emulator.slash_command("help").text

            jobs = make_url(db_url).set(password=PASSWORD)
            # Added elsewhere, due long before the leader's own next job (the monitor, in 5 minutes): the
            # leader's periodic wake-up runs it on time.
            _add_recheck(jobs, THREADS[0], datetime.now(UTC) + timedelta(seconds=1))
            wait_for(lambda: _rechecks(emulator, THREADS[0]), timeout=1 + 5 * POLL + 3)

            _add_recheck(jobs, THREADS[1], datetime.now(UTC) + timedelta(seconds=3))
            bots[leader].kill()
            bots[leader].communicate(timeout=10)
            started = time.monotonic()
            wait_for(lambda: (_health(bases[standby]) or {}).get("role") == "leader" or None, timeout=20)
            takeover = time.monotonic() - started
            wait_for(lambda: emulator.connected_apps == 1 or None, timeout=20)
            assert "`/atp help`" in emulator.slash_command("help").text

            wait_for(lambda: _rechecks(emulator, THREADS[1]), timeout=20)
            time.sleep(6 * POLL)  # the killed leader had it pending too: it must still run only once
            assert [len(_rechecks(emulator, thread)) for thread in THREADS] == [1, 1]
            assert takeover < 3 * POLL + 5
        finally:
            for bot in bots:
                if bot.poll() is None:
                    bot.send_signal(signal.SIGTERM)
            outputs = [bot.communicate(timeout=30) for bot in bots]
    survivor = bots[standby]
    assert survivor.returncode == 0, outputs[standby][1]
    assert "this replica is the leader" in outputs[standby][1]
    for out, err in outputs:
        assert PASSWORD not in out + err


@pytest.fixture
def two_hosts(lock_url: URL, tmp_path: Path) -> Iterator[tuple[AccountLocks, AccountLocks]]:
    """The account locks of two hosts: two state directories (two separate flocks), one database."""
    hosts = [AccountLocks(tmp_path / name, AdvisoryLocks(lock_url, POLL)) for name in ("a", "b")]
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    yield hosts[0], hosts[1]
    for host in hosts:
        host.close()


def test_replicas_share_the_account_lock(two_hosts: tuple[AccountLocks, AccountLocks]) -> None:
    """Two hosts still test one account at a time."""
    host_a, host_b = two_hosts
    with host_a.hold("corp") as lease:
        assert lease.account_id == "corp"
        with pytest.raises(AccountBusy, match="Another test or change for account corp"), host_b.hold("corp"):
            pass
        with host_b.hold("other"):
            pass
    with host_b.hold("corp"):
        pass


def test_an_unreachable_shared_lock_refuses_the_test(cluster: PostgresCluster, tmp_path: Path) -> None:
    down = AdvisoryLocks(make_url(cluster.url).set(password=PASSWORD, port=_closed_port()), POLL)
    with (
        closing(AccountLocks(tmp_path, down)) as locks,
        pytest.raises(SharedLockUnavailable, match="cannot be reached"),
        locks.hold("corp"),
    ):
        pass
    with AccountLocks(tmp_path).hold("corp"):  # the host lock was released
        pass


def _replica_settings(tmp_path: Path, name: str, db_url: str) -> Settings:
    tables = replica_tables(db_url, DB_PASSWORD_ENV, POLL) | {"lockout_guard": {"max_rejections": 2}}
    return parse_settings(f'state_dir = "{tmp_path / name}"\n{ACCOUNT}{tomli_w.dumps(tables)}')


def test_replicas_share_the_lockout_guard(
    cluster: PostgresCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rejection counted on one replica counts on the other: two rejections in all, not two each."""
    monkeypatch.setenv(DB_PASSWORD_ENV, PASSWORD)
    a, b = (LockoutGuard.for_settings(_replica_settings(tmp_path, n, cluster.url)) for n in ("a", "b"))
    with AccountLocks(tmp_path).hold("corp") as lease:
        for guard in (a, b):
            attempt = guard.admit(lease).attempt
            assert attempt is not None and guard.settle(attempt, Reason.WRONG_PASSWORD)
        refused = a.admit(lease)
    assert not refused.allowed and refused.recent_rejections == 2
    assert "refuses more tests until" in refused.message
    assert not (tmp_path / "a" / GUARD_FILE).exists()


def test_an_unreadable_shared_guard_refuses_the_test(
    cluster: PostgresCluster,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv(DB_PASSWORD_ENV, PASSWORD)
    down = str(make_url(cluster.url).set(port=_closed_port()))
    guard = LockoutGuard.for_settings(_replica_settings(tmp_path, "a", down))
    with AccountLocks(tmp_path).hold("corp") as lease:
        decision = guard.admit(lease)
    assert not decision.allowed and decision.reason is Reason.GUARD_UNAVAILABLE
    assert "Nothing was sent to Active Directory" in decision.message
    assert "lockout guard: cannot read the shared database" in caplog.text
    assert PASSWORD not in caplog.text + decision.message


def test_the_change_path_of_a_replica_holds_the_account_across_the_replicas(
    cluster: PostgresCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No entry point has to remember the replicas' lock: the change path built from a replica's
    configuration takes it, so a change is refused while another replica tests the account."""
    monkeypatch.setenv(DB_PASSWORD_ENV, PASSWORD)
    tested: list[str] = []

    def tester(account: AccountConfig, *_args: object, **_kwargs: object) -> ConnectionTestResult:
        tested.append(account.id)
        return ConnectionTestResult(account.id, Outcome.PASSED, "accepted", dc="ldaps://dc1")

    replicas = []
    for name in ("a", "b"):
        settings = _replica_settings(tmp_path, name, cluster.url)
        init_embedded_store(settings)
        replicas.append(
            PasswordChanges(
                settings,
                state_dir=state_dir(settings),
                store=open_store(settings),
                audit=open_audit(settings),
                tester=tester,
            )
        )
    with replicas[0].locks.hold("corp"):
        outcome = replicas[1].change("corp", SecretStr("Never-Sent-1"), "cli:test")
    assert outcome.status is ChangeStatus.NOT_STARTED, outcome
    assert "Another test or change for account corp is in progress" in outcome.message
    assert tested == []
    for changes in replicas:
        changes.locks.close()
