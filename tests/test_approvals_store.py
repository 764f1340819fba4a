"""The held requests (bot.change.approvals) on SQLite and on the replicas' PostgreSQL: decided once,
sealed with the request id as associated data, the ciphertext gone at the
decision, the canary never in plaintext."""

from __future__ import annotations

import base64
import itertools
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

import pytest
from pydantic import SecretStr
from sqlalchemy import Engine, create_engine, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from bot.audit import AuditTrail
from bot.change.approvals import (
    ApprovalError,
    HeldRequests,
    Requester,
    RequestStatus,
    _requests,
    approvals_key,
    new_request_id,
)
from bot.change.baseline import Baseline, changed_since
from bot.config import AccountConfig, ConfigError, Settings
from bot.directory import ConnectionTestResult, LookupGuard, Outcome, PasswordExpiry
from bot.infra.redaction import secret_forms
from bot.infra.state_dir import sqlite_engine
from bot.store import CredentialStore
from commands.password.approval_views import decided_message, request_message, waiting_modal
from lab.postgres import PostgresCluster
from tests.conftest import CANARY
from tests.peers import postgres_cluster

PASSWORD = "pg-approvals-password-19"
DATABASES = itertools.count()
ALICE = Requester("U0ALICE", "slack:U0ALICE (alice)", "C0OPS", "V1")
TEST = ConnectionTestResult(
    "svc", Outcome.PASSED, "ok", dc="dc1.corp.test", expiry=PasswordExpiry(never=True)
)
BASELINE = Baseline(datetime.now(UTC), None, None)


@pytest.fixture(scope="module")
def cluster() -> Iterator[PostgresCluster]:
    yield from postgres_cluster(PASSWORD)


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        made = sqlite_engine(tmp_path / "approvals.sqlite")
    else:
        cluster: PostgresCluster = request.getfixturevalue("cluster")
        url = make_url(cluster.create_database(f"approvals_{next(DATABASES)}")).set(password=PASSWORD)
        made = create_engine(url, poolclass=NullPool)
    yield made
    made.dispose()


def held(engine: Engine) -> HeldRequests:
    return HeldRequests(engine, os.urandom(32), timedelta(minutes=15))


def plaintext(engine: Engine) -> str:
    """Every value of the table as text (bytes as Latin-1, so any byte of the canary shows)."""
    with engine.connect() as db:
        rows = db.execute(text("SELECT * FROM approval_requests")).all()
    return " ".join(v.decode("latin-1") if isinstance(v, bytes) else str(v) for row in rows for v in row)


def test_a_request_is_decided_once_and_its_password_opened_once(engine: Engine) -> None:
    requests = held(engine)
    request = requests.hold(new_request_id(), "svc", SecretStr(CANARY), ALICE, TEST, BASELINE)
    assert not any(form in plaintext(engine) for form in secret_forms(CANARY))
    approved = requests.decide(request.id, RequestStatus.APPROVED, "bob")
    assert approved is not None
    assert requests.decide(request.id, RequestStatus.APPROVED, "carol") is None
    assert requests.decide(request.id, RequestStatus.DENIED, "carol") is None
    assert requests.open_approved(approved).get_secret_value() == CANARY
    with pytest.raises(ApprovalError, match="already used"):
        requests.open_approved(approved)
    with engine.connect() as db:
        assert db.execute(text("SELECT ciphertext FROM approval_requests")).scalar() is None


def test_concurrent_decisions_have_one_winner(engine: Engine) -> None:
    requests = held(engine)
    request = requests.hold(new_request_id(), "svc", SecretStr(CANARY), ALICE, TEST, BASELINE)
    winners: list[object] = []
    start = threading.Barrier(4)

    def decide(state: RequestStatus) -> None:
        start.wait()
        winners.append(requests.decide(request.id, state, "someone"))

    threads = [
        threading.Thread(target=decide, args=(s,))
        for s in [RequestStatus.APPROVED] * 2 + [RequestStatus.DENIED] * 2
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len([w for w in winners if w is not None]) == 1


def test_a_sealed_password_moved_to_another_request_does_not_open(engine: Engine) -> None:
    requests = held(engine)
    first = requests.hold(new_request_id(), "svc", SecretStr(CANARY), ALICE, TEST, BASELINE)
    second = requests.hold(new_request_id(), "svc", SecretStr("Other-Pa55word!"), ALICE, TEST, BASELINE)
    with engine.begin() as db:
        sealed = db.execute(
            text("SELECT nonce, ciphertext FROM approval_requests WHERE id = :id"), {"id": first.id}
        ).one()
        db.execute(
            update(_requests)
            .where(_requests.c.id == second.id)
            .values(nonce=sealed.nonce, ciphertext=sealed.ciphertext)
        )
    approved = requests.decide(second.id, RequestStatus.APPROVED, "bob")
    assert approved is not None
    with pytest.raises(ApprovalError, match="cannot be opened"):
        requests.open_approved(approved)


def test_denied_and_expired_requests_lose_their_password_at_once(engine: Engine) -> None:
    requests = HeldRequests(engine, os.urandom(32), timedelta(seconds=-1))  # due at once
    denied = requests.hold(new_request_id(), "svc", SecretStr(CANARY), ALICE, TEST, BASELINE)
    due = requests.hold(new_request_id(), "svc", SecretStr(CANARY), ALICE, TEST, BASELINE)
    assert requests.decide(denied.id, RequestStatus.DENIED, "bob") is None  # expired: too late to decide
    assert {r.id for r in requests.due()} == {denied.id, due.id}
    for request in requests.due():
        assert requests.decide(request.id, RequestStatus.EXPIRED, "atp-bot") is not None
    assert requests.due() == []
    with engine.connect() as db:
        assert (
            db.execute(text("SELECT count(*) FROM approval_requests WHERE ciphertext IS NOT NULL")).scalar()
            == 0
        )


def test_the_key_comes_from_key_file_only_when_private(tmp_path: Path) -> None:
    key_file = tmp_path / "approvals.key"
    key_file.write_text(base64.urlsafe_b64encode(os.urandom(32)).decode() + "\n")
    key_file.chmod(0o644)
    settings = Settings.model_validate(
        {
            "state_dir": str(tmp_path / "state"),
            "accounts": [{"id": "svc", "username": "svc@corp.test", "domain_controllers": ["ldaps://dc1"]}],
            "store": {"backend": "command", "command": {"argv": ["/bin/true"]}},
            "approvals": {"required": True, "approvers": ["U0BOB"], "key_file": str(key_file)},
        }
    )
    with pytest.raises(ConfigError, match="chmod 600"):
        approvals_key(settings)
    key_file.chmod(0o600)
    assert len(approvals_key(settings)) == 32


def test_approval_needs_approvers_and_a_key_outside_the_embedded_store() -> None:
    account = {
        "id": "svc",
        "username": "svc@corp.test",
        "domain_controllers": ["ldaps://dc1"],
        "approval": True,
    }
    with pytest.raises(ValueError, match="nobody can approve"):
        Settings.model_validate({"accounts": [account]})
    with pytest.raises(ValueError, match="needs its own key"):
        Settings.model_validate(
            {
                "accounts": [account],
                "store": {"backend": "command", "command": {"argv": ["/bin/true"]}},
                "approvals": {"approvers": ["U0BOB"]},
            }
        )
    off = Settings.model_validate(
        {
            "accounts": [{**account, "approval": False}],
            "approvals": {"required": True, "approvers": ["U0BOB"]},
        }
    )
    assert not off.approval_required("svc")


def test_the_held_test_keeps_its_warnings_notes_and_baseline(engine: Engine) -> None:
    """What the requester saw of the test reaches the approver: warnings, notes, and what the approval
    cannot check again; all of it survives the database."""
    requests = held(engine)
    doubtful = replace(
        TEST,
        warnings=("not confirmed as the current password by Kerberos",),
        notes=("lockout pre-check unavailable: lookup account: invalid credentials",),
    )
    baseline = Baseline(datetime.now(UTC), 7, None, "the account has no lookup account")
    request = requests.hold(new_request_id(), "svc", SecretStr(CANARY), ALICE, doubtful, baseline)
    loaded = requests.get(request.id)
    assert loaded is not None
    assert loaded.test.warnings == doubtful.warnings and loaded.test.notes == doubtful.notes
    assert loaded.baseline == baseline
    settings = Settings.model_validate(
        {"accounts": [{"id": "svc", "username": "svc@corp.test", "domain_controllers": ["ldaps://dc1"]}]}
    )
    text, _ = request_message(loaded, settings)
    modal = json.dumps(waiting_modal(loaded))
    for shown in (text, modal, decided_message(loaded, settings, "Denied.")[0]):
        assert ":warning: not confirmed as the current password by Kerberos" in shown
        assert ":information_source: lockout pre-check unavailable" in shown
        assert "the account has no lookup account" in shown


def test_a_request_held_in_the_earlier_shape_still_loads(engine: Engine) -> None:
    """A request held before warnings, notes and the baseline were kept: it loads with none of them, and
    its approval is refused as stale (nothing recorded to check against)."""
    requests = held(engine)
    request = requests.hold(new_request_id(), "svc", SecretStr(CANARY), ALICE, TEST, BASELINE)
    earlier = '{"dc": "dc1.corp.test", "message": "ok", "never": true, "at": null}'
    with engine.begin() as db:
        db.execute(update(_requests).where(_requests.c.id == request.id).values(tested=earlier, last_save=3))
    loaded = requests.get(request.id)
    assert loaded is not None
    assert loaded.test.warnings == () and loaded.test.notes == ()
    assert loaded.test.expiry == PasswordExpiry(never=True) and loaded.test.dc == "dc1.corp.test"
    assert loaded.baseline is None
    account = AccountConfig.model_validate(
        {"id": "svc", "username": "svc@corp.test", "domain_controllers": ["ldaps://dc1"]}
    )
    why = changed_since(
        account, cast(CredentialStore, None), cast(AuditTrail, None), loaded.baseline, cast(LookupGuard, None)
    )
    assert why is not None and "earlier atp-bot" in why
