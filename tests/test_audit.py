"""The audit trail: records, the hash chain (edits, deletions, insertions), concurrency, no secrets."""

from __future__ import annotations

import base64
import os
import sqlite3
import subprocess
import sys
import threading
from dataclasses import FrozenInstanceError
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import SecretStr

from bot.audit import AuditError, record_or_log
from bot.audit.trail import AuditAction, AuditEvent, AuditOutcome, AuditRow, AuditTrail, open_audit, row_hash
from bot.audit.view import format_event, format_history, history_json
from bot.infra.redaction import active_secret
from tests.storetools import CANARY, check_event, files_containing, make_settings


def _trail(tmp_path: Path) -> AuditTrail:
    return open_audit(make_settings(tmp_path))


def _db(tmp_path: Path) -> Path:
    return tmp_path / "state" / "audit.sqlite"


def _fill(trail: AuditTrail, count: int) -> None:
    for index in range(count):
        trail.record(
            AuditEvent(
                actor="cli:alice",
                action=AuditAction.TEST,
                account="corp",
                outcome=AuditOutcome.OK,
                detail=f"event {index}",
            )
        )


def test_record_and_recent(tmp_path: Path) -> None:
    trail = _trail(tmp_path)
    first = trail.record(
        AuditEvent(
            actor="slack:U123 (alice)", action=AuditAction.TEST, account="corp", outcome=AuditOutcome.OK
        )
    )
    trail.record(
        AuditEvent(
            actor="cli:bob",
            action=AuditAction.SAVE,
            account="lab",
            outcome=AuditOutcome.FAILED,
            reason="exit-status",
            detail="vault said no",
        )
    )
    trail.record(
        AuditEvent(actor="cli:bob", action=AuditAction.STORE_INIT, account=None, outcome=AuditOutcome.OK)
    )
    assert first.id == 1
    assert first.time.tzinfo is not None
    assert first.time.utcoffset() == UTC.utcoffset(None)
    assert [r.action for r in trail.recent()] == ["store-init", "save", "test"]
    (only,) = trail.recent(account="lab")
    assert (only.actor, only.outcome, only.reason, only.detail) == (
        "cli:bob",
        "failed",
        "exit-status",
        "vault said no",
    )
    assert len(trail.recent(limit=2)) == 2
    result = trail.verify()
    assert result.intact
    assert result.rows == 3
    assert result.head_hash == trail.recent(limit=1)[0].hash


def test_an_audit_event_is_built_with_named_fields_and_recorded_as_it_says(tmp_path: Path) -> None:
    event = AuditEvent(
        actor="cli:bob",
        action=AuditAction.SAVE,
        account="lab",
        outcome=AuditOutcome.FAILED,
        reason="exit-status",
        detail="vault said no",
    )
    with pytest.raises(TypeError):  # the reason and the detail can never be swapped by position
        AuditEvent("cli:bob", AuditAction.SAVE, "lab", AuditOutcome.FAILED)  # type: ignore[misc]
    with pytest.raises(FrozenInstanceError):
        event.detail = "edited"  # type: ignore[misc]
    row = _trail(tmp_path).record(event)
    assert (row.actor, row.action, row.account, row.outcome, row.reason, row.detail) == (
        "cli:bob",
        "save",
        "lab",
        "failed",
        "exit-status",
        "vault said no",
    )
    assert AuditEvent(actor="cli:bob", action=AuditAction.CHECK, account=None, outcome=AuditOutcome.OK) == (
        AuditEvent(actor="cli:bob", action="check", account=None, outcome=AuditOutcome.OK, reason=None)
    )


def test_record_or_log_logs_an_unavailable_trail_and_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    class BrokenTrail:
        def record(self, event: AuditEvent) -> None:
            raise AuditError("cannot write to the audit trail: disk full")

    event = AuditEvent(actor="cli:bob", action=AuditAction.SAVE, account="lab", outcome=AuditOutcome.OK)
    record_or_log(BrokenTrail(), event)
    assert "audit trail unavailable; not recorded: cli:bob save lab ok: cannot write" in caplog.text


def test_fields_are_one_line_and_bounded(tmp_path: Path) -> None:
    trail = _trail(tmp_path)
    row = trail.record(check_event("cli:a", detail="line one\nline two\t" + "x" * 1000))
    assert "\n" not in (row.detail or "")
    assert len(row.detail or "") == 500
    with pytest.raises(ValueError, match="actor"):
        trail.record(check_event(""))


def test_active_secrets_never_reach_the_trail(tmp_path: Path) -> None:
    trail = _trail(tmp_path)
    with active_secret(SecretStr(CANARY)):
        row = trail.record(
            AuditEvent(
                actor="cli:a",
                action=AuditAction.CHANGE,
                account="corp",
                outcome=AuditOutcome.ERROR,
                reason="bug",
                detail=f"oops {CANARY}",
            )
        )
    assert row.detail == "oops [REDACTED]"
    assert files_containing(tmp_path / "state", CANARY) == []


def test_edited_row_is_detected(tmp_path: Path) -> None:
    _fill(_trail(tmp_path), 5)
    with sqlite3.connect(_db(tmp_path)) as db:
        db.execute("UPDATE audit_events SET outcome = 'ok', detail = 'nothing to see' WHERE id = 3")
    result = _trail(tmp_path).verify()
    assert not result.intact
    assert result.first_broken_id == 3
    assert "edited" in (result.problem or "")
    assert result.rows == 2


def test_deleted_row_is_detected(tmp_path: Path) -> None:
    _fill(_trail(tmp_path), 5)
    with sqlite3.connect(_db(tmp_path)) as db:
        db.execute("DELETE FROM audit_events WHERE id = 2")
    result = _trail(tmp_path).verify()
    assert not result.intact
    assert result.first_broken_id == 3
    assert "row 2 is missing" in (result.problem or "")


def test_deleted_last_rows_are_detected(tmp_path: Path) -> None:
    _fill(_trail(tmp_path), 5)
    with sqlite3.connect(_db(tmp_path)) as db:
        db.execute("DELETE FROM audit_events WHERE id >= 4")
    result = _trail(tmp_path).verify()
    assert not result.intact
    assert result.first_broken_id == 4
    assert "removed from the end" in (result.problem or "")


def test_inserted_row_is_detected(tmp_path: Path) -> None:
    _fill(_trail(tmp_path), 5)
    with sqlite3.connect(_db(tmp_path)) as db:
        # Make room after row 2 and insert a forged row with a correct hash of its own.
        for row_id in range(5, 2, -1):
            db.execute("UPDATE audit_events SET id = ? WHERE id = ?", (row_id + 1, row_id))
        prev_hash = db.execute("SELECT hash FROM audit_events WHERE id = 2").fetchone()[0]
        forged = {
            "id": 3,
            "time": datetime.now(UTC).isoformat(),
            "actor": "cli:mallory",
            "action": "change",
            "account": "corp",
            "outcome": "ok",
            "reason": None,
            "detail": None,
            "prev_hash": prev_hash,
        }
        forged["hash"] = row_hash(forged)
        db.execute(
            "INSERT INTO audit_events VALUES (:id, :time, :actor, :action, :account, :outcome, :reason, "
            ":detail, :prev_hash, :hash)",
            forged,
        )
    result = _trail(tmp_path).verify()
    assert not result.intact
    assert result.first_broken_id == 4


def test_concurrent_threads_do_not_fork_the_chain(tmp_path: Path) -> None:
    trail = _trail(tmp_path)
    errors: list[BaseException] = []

    def writer(name: str) -> None:
        try:
            for index in range(20):
                trail.record(check_event(f"cli:{name}", detail=str(index)))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(f"t{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    result = trail.verify()
    assert result.intact
    assert result.rows == 160


_WRITER = """
import sys
from pathlib import Path
from bot.audit.trail import open_audit
from tests.storetools import check_event, make_settings

trail = open_audit(make_settings(Path(sys.argv[1])))
for index in range(40):
    trail.record(check_event("cli:" + sys.argv[2], detail=str(index)))
"""


@pytest.mark.parametrize("keyed", [False, True])
def test_two_processes_do_not_fork_the_chain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keyed: bool
) -> None:
    # No trail yet: the two processes also race to create the database and its tables.
    if keyed:
        monkeypatch.setenv("ATP_BOT_AUDIT_KEY", base64.urlsafe_b64encode(os.urandom(32)).decode())
    root = Path(__file__).resolve().parent.parent
    children = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path), f"p{i}"], cwd=root) for i in range(2)
    ]
    for child in children:
        assert child.wait(timeout=60) == 0
    result = _trail(tmp_path).verify()
    assert result.intact
    assert result.rows == 80
    assert result.keyed_from == (1 if keyed else None)


def _row(**overrides: object) -> AuditRow:
    values: dict[str, object] = {
        "id": 7,
        "time": datetime(2026, 11, 25, 6, 1, 2, tzinfo=UTC),
        "actor": "slack:U123 (alice)",
        "action": "change",
        "account": "corp",
        "outcome": "failed",
        "reason": "ldap-52e",
        "detail": "the new password was rejected by dc1",
        "prev_hash": "0" * 64,
        "hash": "1" * 64,
    }
    values.update(overrides)
    return AuditRow(**values)  # type: ignore[arg-type]


def test_history_views() -> None:
    assert format_event(_row()) == (
        "2026-11-25 06:01:02Z  slack:U123 (alice)  change  corp  failed (ldap-52e): "
        "the new password was rejected by dc1"
    )
    assert format_event(_row(account=None, reason=None, detail=None, outcome="ok")).endswith("change  -  ok")
    assert format_history([]) == "No audit events yet."
    assert format_history([], "corp") == "No audit events for corp."
    assert len(format_history([_row(), _row(id=6)]).splitlines()) == 2
    (item,) = history_json([_row()])
    assert item["time"] == "2026-11-25T06:01:02+00:00"
    assert item["account"] == "corp"
    assert {"time", "actor", "action", "account", "outcome"} <= set(item)
    assert "hash" not in item
