"""The monitor's persistent memory: SQLite in the state directory, or the replicas' shared PostgreSQL.

Log positions, open incidents with their message references, per-sensor reachability, the outbox of
notices not yet delivered, and which expiry warnings fired. A check cycle's findings are written in one
transaction before anything is sent, so a crash or a notifier outage never loses an alert.

With replicas (`[scheduler] leader_lock_url`) the state lives in that database, so that a new leader
goes on from the old one's log positions, updates and closes its alert, and sends what it left queued;
`exclusive` then also keeps a cycle or a delivery from running on two replicas at once.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    delete,
    insert,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite

from bot.config import ConfigError, Settings
from bot.directory import PasswordExpiry
from bot.infra.advisory import AdvisoryLocks, lock_engine
from bot.infra.dbschema import create_idempotently
from bot.infra.state_dir import sqlite_engine
from bot.monitor.models import Incident, MessageRef
from bot.sensors import LogPosition

STATE_NAME = "monitor.sqlite"
# How long a replica waits for another one's cycle or delivery before it gives up (a cycle is bounded by
# the sensors' deadlines, far below this).
EXCLUSIVE_TIMEOUT_SECONDS = 30 * 60

_metadata = MetaData()
_positions = Table(
    "positions", _metadata, Column("sensor", Text, primary_key=True), Column("data", Text, nullable=False)
)
_incidents = Table(
    "incidents",
    _metadata,
    Column("account_id", Text, primary_key=True),
    Column("data", Text, nullable=False),
    Column("ref", Text),
    Column("delivered", Integer, nullable=False),
)
_reachability = Table(
    "reachability",
    _metadata,
    Column("sensor", Text, primary_key=True),
    Column("failures", Integer, nullable=False),
    Column("since", Text),
    Column("detail", Text),
    Column("reported", Integer, nullable=False),
)
_outbox = Table(
    "outbox",
    _metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", Text, nullable=False),
    Column("thread", Text),
    Column("payload", Text, nullable=False),
    sqlite_autoincrement=True,
)
_expiry_fired = Table(
    "expiry_fired",
    _metadata,
    Column("account_id", Text, nullable=False),
    Column("expires_at", Text, nullable=False),
    Column("threshold", Integer, nullable=False),
    PrimaryKeyConstraint("account_id", "expires_at", "threshold"),
)
_expiry_reads = Table(
    "expiry_reads",
    _metadata,
    Column("account_id", Text, primary_key=True),
    Column("read_on", Text, nullable=False),
    Column("never", Integer, nullable=False),
    Column("expires_at", Text),
)

_drift_events = Table(
    "drift_events",
    _metadata,
    Column("account_id", Text, nullable=False),
    Column("event", Text, nullable=False),
    PrimaryKeyConstraint("account_id", "event"),
)

_sensor_problems = Table(
    "sensor_problems",
    _metadata,
    Column("sensor", Text, nullable=False),
    Column("problem", Text, nullable=False),
    PrimaryKeyConstraint("sensor", "problem"),
)


def _upsert(db: Connection, table: Table, values: Mapping[str, Any], *, replace: bool = True) -> None:
    """Insert a row, or replace (`replace`) or keep (not `replace`) the one with the same primary key."""
    dialect = postgresql if db.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(table).values(**values)
    keys = [c.name for c in table.primary_key.columns]
    if replace:
        changed = {name: statement.excluded[name] for name in values if name not in keys}
        db.execute(statement.on_conflict_do_update(index_elements=keys, set_=changed))
    else:
        db.execute(statement.on_conflict_do_nothing(index_elements=keys))


def _replace_set(db: Connection, table: Table, owner: str, values: set[str]) -> None:
    """Replace the rows of `owner` in an (owner, value) table with one row per value."""
    owner_column, value_column = table.columns
    db.execute(delete(table).where(owner_column == owner))
    for value in sorted(values):
        db.execute(insert(table).values({owner_column.name: owner, value_column.name: value}))


def _incident_key(account_id: str | None) -> str:
    """The row key of an account's incident; "" (never an account id) for sensors that name no account."""
    return account_id or ""


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


class MonitorMemory:
    def __init__(self, engine: Engine, locks: AdvisoryLocks | None = None) -> None:
        self._engine = engine
        self._locks = locks
        create_idempotently(lambda: _metadata.create_all(engine))

    @classmethod
    def in_state_dir(cls, state_dir: Path) -> MonitorMemory:
        path = state_dir / STATE_NAME
        try:
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        except OSError as exc:
            raise ConfigError([f"monitor state: cannot create {path}: {exc.strerror}"]) from None
        return cls(sqlite_engine(path))

    @classmethod
    def for_settings(cls, settings: Settings, state_dir: Path) -> MonitorMemory:
        """The state this configuration's replicas share, or this host's when there are none."""
        shared = settings.scheduler.leader_lock()
        if shared is None:
            return cls.in_state_dir(state_dir)
        timeout = settings.scheduler.leader_poll_seconds
        return cls(
            lock_engine(shared, timeout, pooled=True, autocommit=False), AdvisoryLocks(shared, timeout)
        )

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One atomic unit of writes (commits at the end, rolls back on an exception)."""
        with self._engine.begin() as db:
            yield db

    @contextmanager
    def exclusive(self, name: str, local: threading.Lock | threading.RLock) -> Iterator[None]:
        """Hold `local` (this process) and, with replicas, the lock `name` shared with them (waiting)."""
        with local:
            shared = (
                self._locks.wait_for(f"atp-bot:monitor:{name}", poll=0.2, timeout=EXCLUSIVE_TIMEOUT_SECONDS)
                if self._locks is not None
                else nullcontext()
            )
            with shared:
                yield

    def close(self) -> None:
        self._engine.dispose()
        if self._locks is not None:
            self._locks.close()

    # --- log positions ---

    def positions(self) -> dict[str, LogPosition]:
        with self.transaction() as db:
            rows = db.execute(select(_positions.c.sensor, _positions.c.data)).all()
        return {sensor: LogPosition.from_json(json.loads(data)) for sensor, data in rows}

    @staticmethod
    def save_position(db: Connection, sensor: str, position: LogPosition) -> None:
        _upsert(db, _positions, {"sensor": sensor, "data": json.dumps(position.to_json())})

    # --- incidents ---

    def incidents(self) -> dict[str | None, StoredIncident]:
        with self.transaction() as db:
            rows = db.execute(select(_incidents.c.data, _incidents.c.ref, _incidents.c.delivered)).all()
        found = {}
        for data, ref, delivered in rows:
            incident = Incident.model_validate_json(data)
            found[incident.account_id] = StoredIncident(
                incident, MessageRef.model_validate_json(ref) if ref else None, bool(delivered)
            )
        return found

    @staticmethod
    def save_incident(db: Connection, stored: StoredIncident) -> None:
        _upsert(
            db,
            _incidents,
            {
                "account_id": _incident_key(stored.incident.account_id),
                "data": stored.incident.model_dump_json(),
                "ref": stored.ref.model_dump_json() if stored.ref else None,
                "delivered": int(stored.delivered),
            },
        )

    def open_incidents(self) -> int:
        return sum(not stored.incident.closed for stored in self.incidents().values())

    def put_incident(self, stored: StoredIncident) -> None:
        with self.transaction() as db:
            self.save_incident(db, stored)

    def drop_incident(self, account_id: str | None) -> None:
        with self.transaction() as db:
            db.execute(delete(_incidents).where(_incidents.c.account_id == _incident_key(account_id)))

    # --- reachability ---

    def reachability(self) -> dict[str, Reachability]:
        t = _reachability
        with self.transaction() as db:
            rows = db.execute(select(t.c.sensor, t.c.failures, t.c.since, t.c.detail, t.c.reported)).all()
        return {
            sensor: Reachability(
                sensor, failures, datetime.fromisoformat(since) if since else None, detail, bool(reported)
            )
            for sensor, failures, since, detail, reported in rows
        }

    @staticmethod
    def save_reachability(db: Connection, state: Reachability) -> None:
        _upsert(
            db,
            _reachability,
            {
                "sensor": state.sensor,
                "failures": state.failures,
                "since": state.since.isoformat() if state.since else None,
                "detail": state.detail,
                "reported": int(state.reported),
            },
        )

    # --- outbox: notices waiting for delivery, oldest first ---

    @staticmethod
    def enqueue(db: Connection, kind: str, payload: str, thread: MessageRef | None = None) -> None:
        db.execute(
            insert(_outbox).values(
                kind=kind, thread=thread.model_dump_json() if thread else None, payload=payload
            )
        )

    def outbox(self) -> list[OutboxItem]:
        t = _outbox
        with self.transaction() as db:
            rows = db.execute(select(t.c.id, t.c.kind, t.c.thread, t.c.payload).order_by(t.c.id)).all()
        return [
            OutboxItem(row_id, kind, MessageRef.model_validate_json(thread) if thread else None, payload)
            for row_id, kind, thread, payload in rows
        ]

    def delivered(self, item: OutboxItem) -> None:
        with self.transaction() as db:
            db.execute(delete(_outbox).where(_outbox.c.id == item.id))

    # --- password expiry ---

    def fired_thresholds(self, account_id: str, expires_at: datetime) -> set[int]:
        t = _expiry_fired
        with self.transaction() as db:
            rows = db.execute(
                select(t.c.threshold).where(
                    t.c.account_id == account_id, t.c.expires_at == expires_at.isoformat()
                )
            ).scalars()
            return set(rows)

    @staticmethod
    def mark_fired(db: Connection, account_id: str, expires_at: datetime, thresholds: set[int]) -> None:
        t = _expiry_fired
        db.execute(delete(t).where(t.c.account_id == account_id, t.c.expires_at != expires_at.isoformat()))
        for threshold in sorted(thresholds):
            values = {"account_id": account_id, "expires_at": expires_at.isoformat(), "threshold": threshold}
            _upsert(db, t, values, replace=False)

    def cached_expiry(self, account_id: str, today: date) -> PasswordExpiry | None:
        """The expiry read earlier today, if any (the saved-credential path binds at most once a day)."""
        t = _expiry_reads
        with self.transaction() as db:
            row = db.execute(
                select(t.c.never, t.c.expires_at).where(
                    t.c.account_id == account_id, t.c.read_on == today.isoformat()
                )
            ).first()
        if row is None:
            return None
        never, expires_at = row
        return PasswordExpiry(
            never=bool(never), at=datetime.fromisoformat(expires_at) if expires_at else None
        )

    def remember_expiry(self, account_id: str, today: date, expiry: PasswordExpiry) -> None:
        with self.transaction() as db:
            _upsert(
                db,
                _expiry_reads,
                {
                    "account_id": account_id,
                    "read_on": today.isoformat(),
                    "never": int(expiry.never),
                    "expires_at": expiry.at.isoformat() if expiry.at else None,
                },
            )

    # --- drift: the events already alerted, per account ---

    def drift_events(self, account_id: str) -> set[str]:
        t = _drift_events
        with self.transaction() as db:
            return set(db.execute(select(t.c.event).where(t.c.account_id == account_id)).scalars())

    @staticmethod
    def save_drift_events(db: Connection, account_id: str, events: set[str]) -> None:
        _replace_set(db, _drift_events, account_id, events)

    def forget_expiry(self, account_id: str) -> None:
        """Drop today's cached expiry (the password just changed, so it has a new expiry date)."""
        with self.transaction() as db:
            db.execute(delete(_expiry_reads).where(_expiry_reads.c.account_id == account_id))

    # --- sensor health: the problems already alerted, per sensor ---

    def sensor_problems(self) -> dict[str, set[str]]:
        t = _sensor_problems
        found: dict[str, set[str]] = {}
        with self.transaction() as db:
            for sensor, problem in db.execute(select(t.c.sensor, t.c.problem)):
                found.setdefault(sensor, set()).add(problem)
        return found

    @staticmethod
    def save_sensor_problems(db: Connection, sensor: str, problems: set[str]) -> None:
        _replace_set(db, _sensor_problems, sensor, problems)
