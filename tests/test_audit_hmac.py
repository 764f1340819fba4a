"""The keyed audit chain through the real `atp-bot audit …` CLI, on SQLite and on PostgreSQL.

An attacker here can write the audit database but does not have the audit key: every tampering is
done with plain SQL, re-computing the unkeyed SHA-256 chain where that would have fooled the old check.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection, make_url

from bot.audit.trail import AuditError, AuditTrail, open_audit, row_hash
from bot.cli import main
from lab.postgres import PostgresCluster
from tests.peers import postgres_cluster
from tests.storetools import check_event, make_settings, write_config

PASSWORD = "pg-test-password-hmac"
PASSWORD_ENV = "ATP_TEST_AUDIT_DB_PASSWORD"
_names = itertools.count()

# The schema of trails written before the audit key existed.
LEGACY_SCHEMA = (
    "CREATE TABLE audit_events (id INTEGER NOT NULL PRIMARY KEY, time VARCHAR(40) NOT NULL, "
    "actor VARCHAR(200) NOT NULL, action VARCHAR(64) NOT NULL, account VARCHAR(64), "
    "outcome VARCHAR(32) NOT NULL, reason VARCHAR(64), detail TEXT, prev_hash VARCHAR(64) NOT NULL, "
    "hash VARCHAR(64) NOT NULL)",
    "CREATE TABLE audit_head (id INTEGER NOT NULL PRIMARY KEY, last_id INTEGER NOT NULL, "
    "last_hash VARCHAR(64) NOT NULL)",
)


@dataclass
class Lab:
    tmp_path: Path
    config: Path
    extra: str
    database_url: str  # with the password, for the attacker's SQL

    def trail(self) -> AuditTrail:
        return open_audit(make_settings(self.tmp_path, self.extra))

    def fill(self, count: int) -> None:
        trail = self.trail()
        for index in range(count):
            trail.record(check_event("cli:alice", detail=f"event {index}"))
        trail.engine.dispose()

    def sql(self) -> Iterator[Connection]:
        engine = create_engine(self.database_url)
        try:
            with engine.begin() as conn:
                yield conn
        finally:
            engine.dispose()

    def cli(self, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
        code = main(["--config", str(self.config), "audit", *args])
        out, err = capsys.readouterr()
        return code, out, err


@pytest.fixture(scope="module")
def cluster() -> Iterator[PostgresCluster]:
    yield from postgres_cluster(PASSWORD)


@pytest.fixture(params=["sqlite", "postgresql"])
def lab(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Lab:
    monkeypatch.delenv("ATP_BOT_AUDIT_KEY", raising=False)
    monkeypatch.delenv("ATP_BOT_STORE_KEY", raising=False)
    if request.param == "sqlite":
        extra = ""
        (tmp_path / "state").mkdir(mode=0o700)  # a legacy trail is written there before atp-bot runs
        database_url = f"sqlite:///{tmp_path / 'state' / 'audit.sqlite'}"
    else:
        cluster: PostgresCluster = request.getfixturevalue("cluster")
        url = cluster.create_database(f"audit_hmac_{next(_names)}")
        monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
        extra = f'[audit]\nurl = "{url}"\npassword_env = "{PASSWORD_ENV}"\n'
        database_url = make_url(url).set(password=PASSWORD).render_as_string(hide_password=False)
    return Lab(tmp_path, write_config(tmp_path, extra), extra, database_url)


def _keyed_lab(lab: Lab, capsys: pytest.CaptureFixture[str], rows: int) -> str:
    """`audit init` on an empty trail, then `rows` more events; the key file's text."""
    code, out, _ = lab.cli(capsys, "init")
    assert code == 0
    assert "created the audit key" in out
    key_file = lab.tmp_path / "state" / "audit.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    lab.fill(rows)
    return key_file.read_text(encoding="ascii").strip()


def _verify_json(lab: Lab, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    code, out, _ = lab.cli(capsys, "verify", "--json", *args)
    return code, json.loads(out)


def _rechain_from(conn: Connection, first_id: int) -> None:
    """What the attacker does after an edit: re-compute the unkeyed chain from `first_id` and the head."""
    rows = [dict(r._mapping) for r in conn.execute(text("SELECT * FROM audit_events ORDER BY id"))]
    prev_hash = rows[first_id - 2]["hash"] if first_id > 1 else "0" * 64
    for row in rows[first_id - 1 :]:
        row["prev_hash"] = prev_hash
        row["hash"] = prev_hash = row_hash(row)
        conn.execute(
            text("UPDATE audit_events SET prev_hash = :prev_hash, hash = :hash WHERE id = :id"),
            {"prev_hash": row["prev_hash"], "hash": row["hash"], "id": row["id"]},
        )
    conn.execute(text("UPDATE audit_head SET last_hash = :h"), {"h": prev_hash})


def test_keyed_trail_verifies_and_the_key_never_leaks(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    key_text = _keyed_lab(lab, capsys, 4)
    code, out, err = lab.cli(capsys, "verify")
    assert code == 0
    assert "intact: 5 rows (keyed from row 1), head 5:" in out
    assert err == ""
    code, again, _ = lab.cli(capsys, "init")
    assert code == 0
    assert "the audit key comes from the key file" in again
    assert key_text not in out + err + again
    for conn in lab.sql():
        dump = repr([tuple(r) for r in conn.execute(text("SELECT * FROM audit_events"))])
        dump += repr([tuple(r) for r in conn.execute(text("SELECT * FROM audit_head"))])
    assert key_text not in dump
    assert base64.urlsafe_b64decode(key_text).hex() not in dump


def test_edited_and_rechained_row_is_detected(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    _keyed_lab(lab, capsys, 5)
    for conn in lab.sql():
        conn.execute(text("UPDATE audit_events SET outcome = 'failed', detail = 'nothing here' WHERE id = 3"))
        _rechain_from(conn, 3)
    code, out, _ = lab.cli(capsys, "verify")
    assert code == 1
    assert "BROKEN at row 3" in out
    assert "keyed hash does not match" in out


def test_rows_dropped_from_the_end_and_head_moved_back_are_detected(
    lab: Lab, capsys: pytest.CaptureFixture[str]
) -> None:
    _keyed_lab(lab, capsys, 5)
    for conn in lab.sql():
        conn.execute(text("DELETE FROM audit_events WHERE id > 4"))
        last_hash = conn.execute(text("SELECT hash FROM audit_events WHERE id = 4")).scalar_one()
        conn.execute(text("UPDATE audit_head SET last_id = 4, last_hash = :h"), {"h": last_hash})
    code, result = _verify_json(lab, capsys)
    assert code == 1
    assert result["intact"] is False
    assert "head (row 4) does not match its HMAC" in result["problem"]
    with pytest.raises(AuditError, match="head does not match its HMAC"):
        lab.trail().record(check_event())  # nothing is chained onto a forged head


def test_stripping_the_keys_is_detected(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    _keyed_lab(lab, capsys, 3)
    for conn in lab.sql():
        conn.execute(text("DELETE FROM audit_events WHERE id = 4"))
        conn.execute(text("UPDATE audit_head SET keyed_from = NULL, mac = NULL"))
        _rechain_from(conn, 2)  # row 1 kept: its keyed hash no longer passes as an unkeyed one
    code, out, _ = lab.cli(capsys, "verify")
    assert code == 1
    assert "BROKEN at row 1" in out


def test_anchor_catches_an_old_head_put_back(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    _keyed_lab(lab, capsys, 2)
    for conn in lab.sql():
        old_head = dict(conn.execute(text("SELECT * FROM audit_head")).one()._mapping)
    code, noted = _verify_json(lab, capsys)
    assert code == 0
    anchor_before = noted["head"]
    assert anchor_before.startswith("3:")
    lab.fill(3)
    code, noted = _verify_json(lab, capsys)
    anchor = noted["head"]
    assert (code, anchor.split(":")[0]) == (0, "6")
    assert lab.cli(capsys, "verify", "--anchor", anchor)[0] == 0
    assert lab.cli(capsys, "verify", "--anchor", anchor_before)[0] == 0

    # Rows dropped back to a head copied earlier (its HMAC is genuine): only an anchor noted outside says so.
    for conn in lab.sql():
        conn.execute(text("DELETE FROM audit_events WHERE id > 3"))
        conn.execute(
            text("UPDATE audit_head SET last_id = :last_id, last_hash = :last_hash, mac = :mac"), old_head
        )
    assert lab.cli(capsys, "verify")[0] == 0
    code, out, _ = lab.cli(capsys, "verify", "--anchor", anchor)
    assert code == 1
    assert "anchor's row 6 is missing" in out

    wrong = f"2:{'ab' * 32}"
    code, out, _ = lab.cli(capsys, "verify", "--anchor", wrong)
    assert code == 1
    assert "BROKEN at row 2" in out
    assert "differs from the anchor" in out
    with pytest.raises(SystemExit) as usage:
        main(["--config", str(lab.config), "audit", "verify", "--anchor", "6:nothex"])
    assert usage.value.code == 2
    assert "expected ID:HASH" in capsys.readouterr().err


def test_keyed_trail_without_its_key_is_a_configuration_error(
    lab: Lab, capsys: pytest.CaptureFixture[str]
) -> None:
    _keyed_lab(lab, capsys, 1)
    key_file = lab.tmp_path / "state" / "audit.key"
    key_file.chmod(0o644)
    code, _, err = lab.cli(capsys, "verify")
    assert code == 2
    assert f"chmod 600 {key_file}" in err
    key_file.unlink()
    code, _, err = lab.cli(capsys, "verify")
    assert code == 2
    assert "keyed from row 1 but no audit key is configured" in err
    with pytest.raises(AuditError, match="no audit key"):
        lab.trail().record(check_event())  # fails closed
    assert "Traceback" not in err
    code, _, err = lab.cli(capsys, "init")  # a new key would never verify the keyed rows
    assert code == 2
    assert "restore the key from its backup" in err
    assert not key_file.exists()


def _legacy_trail(lab: Lab, count: int) -> None:
    """A trail as atp-bot wrote it before the audit key: the old schema and SHA-256 rows."""
    for conn in lab.sql():
        for statement in LEGACY_SCHEMA:
            conn.execute(text(statement))
        prev_hash = "0" * 64
        for row_id in range(1, count + 1):
            row: dict[str, Any] = {
                "id": row_id,
                "time": f"2026-11-0{row_id}T06:00:00.000000+00:00",
                "actor": "cli:alice",
                "action": "save",
                "account": "corp",
                "outcome": "ok",
                "reason": None,
                "detail": f"legacy {row_id}",
                "prev_hash": prev_hash,
            }
            row["hash"] = prev_hash = row_hash(row)
            conn.execute(
                text(
                    "INSERT INTO audit_events VALUES (:id, :time, :actor, :action, :account, :outcome, "
                    ":reason, :detail, :prev_hash, :hash)"
                ),
                row,
            )
        conn.execute(text("INSERT INTO audit_head VALUES (1, :n, :h)"), {"n": count, "h": prev_hash})


def test_legacy_trail_verifies_with_a_warning_until_rekeyed(
    lab: Lab, capsys: pytest.CaptureFixture[str]
) -> None:
    _legacy_trail(lab, 3)
    code, out, err = lab.cli(capsys, "verify")
    assert code == 0
    assert "intact: 3 rows (unkeyed)" in out
    assert "no audit key" in err
    lab.fill(1)  # the bot keeps appending unkeyed rows to it
    assert lab.cli(capsys, "rekey")[0] == 2  # no key yet

    code, out, _ = lab.cli(capsys, "init")
    assert code == 0
    assert "seal it with `atp-bot audit rekey`" in out
    code, _, err = lab.cli(capsys, "verify")
    assert code == 0
    assert "run `atp-bot audit rekey`" in err

    code, out, _ = lab.cli(capsys, "rekey")
    assert code == 0
    assert "verified 5 unkeyed rows and sealed them with keyed row 6" in out
    lab.fill(1)
    code, out, err = lab.cli(capsys, "verify")
    assert code == 0
    assert "intact: 7 rows (keyed from row 6)" in out
    assert err == ""
    code, out, _ = lab.cli(capsys, "rekey")
    assert code == 0
    assert "already keyed from row 6" in out

    # Rows before the re-keyed one are sealed by it: editing one and re-chaining is caught.
    for conn in lab.sql():
        conn.execute(text("UPDATE audit_events SET actor = 'cli:mallory' WHERE id = 2"))
        _rechain_from(conn, 2)
    code, out, _ = lab.cli(capsys, "verify")
    assert code == 1
    assert "BROKEN at row 6" in out


def test_rekey_refuses_a_broken_legacy_trail(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    _legacy_trail(lab, 3)
    for conn in lab.sql():
        conn.execute(text("UPDATE audit_events SET detail = 'edited' WHERE id = 2"))
    assert lab.cli(capsys, "init")[0] == 0
    code, out, _ = lab.cli(capsys, "rekey")
    assert code == 1
    assert "BROKEN at row 2" in out
    assert "nothing was re-keyed" in out
    for conn in lab.sql():
        assert conn.execute(text("SELECT keyed_from FROM audit_head")).scalar_one() is None


def test_key_from_the_environment(
    lab: Lab, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ATP_BOT_AUDIT_KEY", base64.urlsafe_b64encode(os.urandom(32)).decode())
    code, out, _ = lab.cli(capsys, "init")
    assert code == 0
    assert "comes from the environment variable ATP_BOT_AUDIT_KEY" in out
    assert not (lab.tmp_path / "state" / "audit.key").exists()
    lab.fill(2)
    assert "keyed from row 1" in lab.cli(capsys, "verify")[1]
    monkeypatch.setenv("ATP_BOT_AUDIT_KEY", base64.urlsafe_b64encode(os.urandom(32)).decode())
    code, out, _ = lab.cli(capsys, "verify")
    assert code == 1
    assert "BROKEN at row 1" in out
    assert "not the one the trail was written with" in out
