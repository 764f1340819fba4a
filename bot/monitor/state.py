"""The monitor's persistent memory (SQLite in the state directory).

Log positions, open incidents with their message references, per-sensor reachability, the outbox of
notices not yet delivered, and which expiry warnings fired. A check cycle's findings are written in one
transaction before anything is sent, so a crash or a notifier outage never loses an alert.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from bot.config import ConfigError
from bot.directory import PasswordExpiry
from bot.monitor.models import Incident, MessageRef
from bot.sensors import LogPosition

STATE_NAME = "monitor.sqlite"

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS positions (sensor TEXT PRIMARY KEY, data TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS incidents (account_id TEXT PRIMARY KEY, data TEXT NOT NULL, ref TEXT,"
    " delivered INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS reachability (sensor TEXT PRIMARY KEY, failures INTEGER NOT NULL,"
    " since TEXT, detail TEXT, reported INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL,"
    " thread TEXT, payload TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS expiry_fired (account_id TEXT NOT NULL, expires_at TEXT NOT NULL,"
    " threshold INTEGER NOT NULL, PRIMARY KEY (account_id, expires_at, threshold))",
    "CREATE TABLE IF NOT EXISTS expiry_reads (account_id TEXT PRIMARY KEY, read_on TEXT NOT NULL,"
    " never INTEGER NOT NULL, expires_at TEXT)",
)


@dataclass(frozen=True)
class StoredIncident:
    incident: Incident
    ref: MessageRef | None
    delivered: bool


@dataclass(frozen=True)
class Reachability:
    sensor: str
    failures: int = 0
    since: datetime | None = None
    detail: str | None = None
    reported: bool = False


@dataclass(frozen=True)
class OutboxItem:
    id: int
    kind: str
    thread: MessageRef | None
    payload: str


class MonitorState:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        except OSError as exc:
            raise ConfigError([f"monitor state: cannot create {path}: {exc.strerror}"]) from None
        with self.transaction() as db:
            for statement in _SCHEMA:
                db.execute(statement)

    @classmethod
    def in_state_dir(cls, state_dir: Path) -> MonitorState:
        return cls(state_dir / STATE_NAME)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic unit of writes (commits at the end, rolls back on an exception)."""
        with closing(sqlite3.connect(self.path, timeout=30)) as db, db:
            yield db

    # --- log positions ---

    def positions(self) -> dict[str, LogPosition]:
        with self.transaction() as db:
            rows = db.execute("SELECT sensor, data FROM positions").fetchall()
        return {sensor: LogPosition.from_json(json.loads(data)) for sensor, data in rows}

    @staticmethod
    def save_position(db: sqlite3.Connection, sensor: str, position: LogPosition) -> None:
        db.execute(
            "INSERT OR REPLACE INTO positions (sensor, data) VALUES (?, ?)",
            (sensor, json.dumps(position.to_json())),
        )

    # --- incidents ---

    def incidents(self) -> dict[str, StoredIncident]:
        with self.transaction() as db:
            rows = db.execute("SELECT data, ref, delivered FROM incidents").fetchall()
        found = {}
        for data, ref, delivered in rows:
            incident = Incident.model_validate_json(data)
            found[incident.account_id] = StoredIncident(
                incident, MessageRef.model_validate_json(ref) if ref else None, bool(delivered)
            )
        return found

    @staticmethod
    def save_incident(db: sqlite3.Connection, stored: StoredIncident) -> None:
        db.execute(
            "INSERT OR REPLACE INTO incidents (account_id, data, ref, delivered) VALUES (?, ?, ?, ?)",
            (
                stored.incident.account_id,
                stored.incident.model_dump_json(),
                stored.ref.model_dump_json() if stored.ref else None,
                int(stored.delivered),
            ),
        )

    def put_incident(self, stored: StoredIncident) -> None:
        with self.transaction() as db:
            self.save_incident(db, stored)

    def drop_incident(self, account_id: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM incidents WHERE account_id = ?", (account_id,))

    # --- reachability ---

    def reachability(self) -> dict[str, Reachability]:
        with self.transaction() as db:
            rows = db.execute("SELECT sensor, failures, since, detail, reported FROM reachability").fetchall()
        return {
            sensor: Reachability(
                sensor, failures, datetime.fromisoformat(since) if since else None, detail, bool(reported)
            )
            for sensor, failures, since, detail, reported in rows
        }

    @staticmethod
    def save_reachability(db: sqlite3.Connection, state: Reachability) -> None:
        db.execute(
            "INSERT OR REPLACE INTO reachability (sensor, failures, since, detail, reported)"
            " VALUES (?, ?, ?, ?, ?)",
            (
                state.sensor,
                state.failures,
                state.since.isoformat() if state.since else None,
                state.detail,
                int(state.reported),
            ),
        )

    # --- outbox: notices waiting for delivery, oldest first ---

    @staticmethod
    def enqueue(db: sqlite3.Connection, kind: str, payload: str, thread: MessageRef | None = None) -> None:
        db.execute(
            "INSERT INTO outbox (kind, thread, payload) VALUES (?, ?, ?)",
            (kind, thread.model_dump_json() if thread else None, payload),
        )

    def outbox(self) -> list[OutboxItem]:
        with self.transaction() as db:
            rows = db.execute("SELECT id, kind, thread, payload FROM outbox ORDER BY id").fetchall()
        return [
            OutboxItem(row_id, kind, MessageRef.model_validate_json(thread) if thread else None, payload)
            for row_id, kind, thread, payload in rows
        ]

    def delivered(self, item: OutboxItem) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM outbox WHERE id = ?", (item.id,))

    # --- password expiry ---

    def fired_thresholds(self, account_id: str, expires_at: datetime) -> set[int]:
        with self.transaction() as db:
            rows = db.execute(
                "SELECT threshold FROM expiry_fired WHERE account_id = ? AND expires_at = ?",
                (account_id, expires_at.isoformat()),
            ).fetchall()
        return {threshold for (threshold,) in rows}

    @staticmethod
    def mark_fired(
        db: sqlite3.Connection, account_id: str, expires_at: datetime, thresholds: set[int]
    ) -> None:
        db.execute(
            "DELETE FROM expiry_fired WHERE account_id = ? AND expires_at != ?",
            (account_id, expires_at.isoformat()),
        )
        db.executemany(
            "INSERT OR IGNORE INTO expiry_fired (account_id, expires_at, threshold) VALUES (?, ?, ?)",
            [(account_id, expires_at.isoformat(), t) for t in thresholds],
        )

    def cached_expiry(self, account_id: str, today: date) -> PasswordExpiry | None:
        """The expiry read earlier today, if any (the saved-credential path binds at most once a day)."""
        with self.transaction() as db:
            row = db.execute(
                "SELECT never, expires_at FROM expiry_reads WHERE account_id = ? AND read_on = ?",
                (account_id, today.isoformat()),
            ).fetchone()
        if row is None:
            return None
        never, expires_at = row
        return PasswordExpiry(
            never=bool(never), at=datetime.fromisoformat(expires_at) if expires_at else None
        )

    def remember_expiry(self, account_id: str, today: date, expiry: PasswordExpiry) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO expiry_reads (account_id, read_on, never, expires_at)"
                " VALUES (?, ?, ?, ?)",
                (
                    account_id,
                    today.isoformat(),
                    int(expiry.never),
                    expiry.at.isoformat() if expiry.at else None,
                ),
            )

    def forget_expiry(self, account_id: str) -> None:
        """Drop today's cached expiry (the password just changed, so it has a new expiry date)."""
        with self.transaction() as db:
            db.execute("DELETE FROM expiry_reads WHERE account_id = ?", (account_id,))
