"""Lockout with two replicas: wrong passwords spread over two hosts (two state directories) that share
one PostgreSQL, against a real Samba DC whose lockout threshold is 3. The guard's count is shared, so AD
sees at most the guard's two rejections in all, not two per replica; and when the database turns
read-only (a standby after a failover), no test is sent that the guard cannot count."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import tomli_w
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from lab.domain import LabDomain
from lab.postgres import PostgresCluster
from lab.samba import LabUser
from tests.conftest import lab_account, run_cli
from tests.peers import postgres_cluster
from tests.replicas import replica_tables

pytestmark = pytest.mark.samba

DB_PASSWORD = "replica-guard-db-41"
DB_PASSWORD_ENV = "ATP_TEST_REPLICA_GUARD_DB"
WRONG = "The password is wrong"
GUARD = "atp-bot refuses more tests until"


@pytest.fixture(scope="module")
def cluster() -> Iterator[PostgresCluster]:
    yield from postgres_cluster(DB_PASSWORD)


def replica_config(tmp_path: Path, name: str, account: dict[str, object], db_url: str) -> Path:
    """One replica's configuration: its own state directory, the shared database."""
    path = tmp_path / f"{name}.toml"
    config = {
        "state_dir": str(tmp_path / name),
        "accounts": [account],
        **replica_tables(db_url, DB_PASSWORD_ENV, poll=1.0),
    }
    path.write_text(tomli_w.dumps(config), encoding="utf-8")
    return path


def test_replicas_share_one_lockout_count(
    lab_domain: LabDomain,
    fresh_user: LabUser,
    cluster: PostgresCluster,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(DB_PASSWORD_ENV, DB_PASSWORD)
    account = lab_account(lab_domain, fresh_user)
    replicas = [replica_config(tmp_path, name, account, cluster.url) for name in ("a", "b")]

    told = []
    for attempt in range(5):  # a, b, a, b, a: what Slack's round robin would do to one person's retries
        config = replicas[attempt % 2]
        done = run_cli(
            config, "test-connection", "--account", "svc", "--password-stdin", stdin=f"Wrong-{attempt}\n"
        )
        assert done.returncode == 1, done
        told.append(done.stdout)

    assert [WRONG in t for t in told] == [True, True, False, False, False], told
    assert all(GUARD in t for t in told[2:]), told
    state = lab_domain.dc.user_state(fresh_user.name)
    assert state["badPwdCount"] == 2 and not state["locked"], state
    for text in told:
        assert DB_PASSWORD not in text


def test_replicas_refuse_tests_when_the_shared_ledger_turns_read_only(
    lab_domain: LabDomain,
    fresh_user: LabUser,
    cluster: PostgresCluster,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(DB_PASSWORD_ENV, DB_PASSWORD)
    db_url = cluster.create_database("guard_read_only")
    account = lab_account(lab_domain, fresh_user)
    replicas = [replica_config(tmp_path, name, account, db_url) for name in ("a", "b")]

    def test_connection(attempt: int) -> str:
        done = run_cli(
            replicas[attempt % 2],
            "test-connection",
            "--account",
            "svc",
            "--password-stdin",
            stdin=f"Wrong-{attempt}\n",
        )
        assert done.returncode == 1, done
        return done.stdout

    assert WRONG in test_connection(0)
    admin = create_engine(make_url(db_url).set(password=DB_PASSWORD), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:  # what a promoted standby's sessions get, as far as writes go
        conn.exec_driver_sql("ALTER DATABASE guard_read_only SET default_transaction_read_only = on")
    admin.dispose()
    told = [test_connection(attempt) for attempt in range(1, 5)]

    for output in told:
        assert "cannot record the attempt: the shared database cannot be written" in output, told
        assert (
            "cannot execute INSERT in a read-only transaction" in output
            and "nothing was sent to AD" in output
        )
        assert DB_PASSWORD not in output
    state = lab_domain.dc.user_state(fresh_user.name)
    assert state["badPwdCount"] == 1 and not state["locked"], state
