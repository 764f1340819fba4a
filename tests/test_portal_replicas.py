"""The portal step with replicas: the pending step lives in their shared PostgreSQL, so a save on one
replica is pending on the other, and a confirmation lands once whichever replica (or shell) asks."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.audit import AuditEvent
from bot.change.portal import PortalSteps, confirm_step
from bot.config import Settings
from lab.postgres import PostgresCluster
from tests.peers import postgres_cluster
from tests.replicas import replica_tables

PASSWORD = "pg-portal-replicas-17"
DB_PASSWORD_ENV = "ATP_TEST_PORTAL_DB_PASSWORD"


@pytest.fixture(scope="module")
def cluster() -> Iterator[PostgresCluster]:
    yield from postgres_cluster(PASSWORD)


class Audit:
    """Records the audit rows written (the trail itself is another test's subject)."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str]] = []

    def record(self, event: AuditEvent) -> None:
        self.rows.append((event.actor, event.action))


def replica(tmp_path: Path, name: str, db_url: str) -> Settings:
    account = {"id": "svc", "username": "svc@contoso.test", "domain_controllers": ["ldaps://dc"]}
    tables = replica_tables(db_url, DB_PASSWORD_ENV, 0.2) | {
        "state_dir": str(tmp_path / name),
        "accounts": [account],
    }
    return Settings.model_validate(tables)


def test_a_step_saved_on_one_replica_is_confirmed_once_on_the_other(
    cluster: PostgresCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(DB_PASSWORD_ENV, PASSWORD)
    db_url = cluster.create_database("portal_replicas")
    first, second = (PortalSteps.for_settings(replica(tmp_path, name, db_url)) for name in ("a", "b"))
    try:
        saved_at = datetime.now(UTC)
        first.open("svc", "slack:U0ALICE (alice)", saved_at)
        assert [s.account_id for s in second.pending()] == ["svc"]
        audit = Audit()
        confirmed = confirm_step(second, audit, "svc", "cli:bob", datetime.now(UTC), saved_at=saved_at)
        assert confirmed is not None and confirmed.saved_by == "slack:U0ALICE (alice)"
        assert confirm_step(first, audit, "svc", "slack:U0CAROL (carol)", datetime.now(UTC)) is None
        assert audit.rows == [("cli:bob", "portal-updated")]
        assert first.pending() == [] and second.get("svc") == first.get("svc")
    finally:
        first.close()
        second.close()
