"""The audit trail on PostgreSQL through `[audit] url` (a throwaway cluster from lab/postgres.py), keyed
with an audit key from the environment, as replicas sharing one trail run it."""

from __future__ import annotations

import base64
import itertools
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bot.audit import AuditAction, AuditEvent, AuditOutcome, AuditTrail, open_audit
from lab.postgres import PostgresCluster
from tests.peers import postgres_cluster
from tests.storetools import check_event, make_settings

PASSWORD = "pg-test-password-51"
AUDIT_KEY = base64.urlsafe_b64encode(os.urandom(32)).decode()
_names = itertools.count()


@pytest.fixture(scope="module")
def cluster() -> Iterator[PostgresCluster]:
    yield from postgres_cluster(PASSWORD)


@pytest.fixture
def database_url(cluster: PostgresCluster) -> str:
    """A fresh database per test, so every trail starts empty."""
    name = f"audit_{next(_names)}"
    admin = create_engine(make_url(cluster.url).set(password=PASSWORD), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return str(make_url(cluster.url).set(database=name))


def _extra(url: str) -> str:
    return f'[audit]\nurl = "{url}"\npassword_env = "ATP_TEST_AUDIT_DB_PASSWORD"\n'


@pytest.fixture(autouse=True)
def _audit_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATP_BOT_AUDIT_KEY", AUDIT_KEY)


@pytest.fixture
def trail(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> AuditTrail:
    monkeypatch.setenv("ATP_TEST_AUDIT_DB_PASSWORD", PASSWORD)
    return open_audit(make_settings(tmp_path, _extra(database_url)))


def test_record_recent_verify(trail: AuditTrail) -> None:
    trail.record(
        AuditEvent(
            actor="cli:alice",
            action=AuditAction.SAVE,
            account="corp",
            outcome=AuditOutcome.OK,
            detail="saved in embedded",
        )
    )
    trail.record(
        AuditEvent(
            actor="slack:U1 (bob)",
            action=AuditAction.CHECK,
            account="lab",
            outcome=AuditOutcome.FAILED,
            reason="credential-error",
            detail="sensor-2",
        )
    )
    assert [row.action for row in trail.recent()] == ["check", "save"]
    assert trail.recent(account="corp")[0].actor == "cli:alice"
    result = trail.verify()
    assert result.intact
    assert result.rows == 2
    assert result.keyed_from == 1
    assert PASSWORD not in repr(trail.engine.url)


def test_edit_is_detected(trail: AuditTrail) -> None:
    for index in range(4):
        trail.record(check_event("cli:alice", detail=str(index)))
    with trail.engine.begin() as conn:
        conn.execute(text("UPDATE audit_events SET outcome = 'failed' WHERE id = 2"))
    result = trail.verify()
    assert not result.intact
    assert result.first_broken_id == 2


def test_concurrent_threads(trail: AuditTrail) -> None:
    def writer(name: str) -> None:
        for index in range(15):
            trail.record(check_event(f"cli:{name}", detail=str(index)))

    threads = [threading.Thread(target=writer, args=(f"t{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    result = trail.verify()
    assert result.intact
    assert result.rows == 90
    assert result.keyed_from == 1


_WRITER = """
import sys
from pathlib import Path
from bot.audit.trail import open_audit
from tests.storetools import check_event, make_settings

extra = '[audit]\\nurl = "' + sys.argv[2] + '"\\npassword_env = "ATP_TEST_AUDIT_DB_PASSWORD"\\n'
trail = open_audit(make_settings(Path(sys.argv[1]), extra))
for index in range(30):
    trail.record(check_event("cli:" + sys.argv[3], detail=str(index)))
"""


def test_two_processes(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATP_TEST_AUDIT_DB_PASSWORD", PASSWORD)  # no trail yet: they race to create it
    root = Path(__file__).resolve().parent.parent
    children = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path), database_url, f"p{i}"], cwd=root)
        for i in range(2)
    ]
    for child in children:
        assert child.wait(timeout=60) == 0
    result = open_audit(make_settings(tmp_path, _extra(database_url))).verify()
    assert result.intact
    assert result.rows == 60
    assert result.keyed_from == 1
