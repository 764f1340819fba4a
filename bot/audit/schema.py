"""Where the audit trail lives: its tables, the SQLite engine settings, the database URL."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    inspect,
    text,
)
from sqlalchemy.engine import URL, make_url

from bot.audit.events import AuditRow
from bot.config import ConfigError, Settings
from bot.infra.state_dir import state_dir

DEFAULT_AUDIT_NAME = "audit.sqlite"


metadata = MetaData()
events = Table(
    "audit_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("time", String(40), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("action", String(64), nullable=False),
    Column("account", String(64), index=True),
    Column("outcome", String(32), nullable=False),
    Column("reason", String(64)),
    Column("detail", Text),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)
head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("last_id", Integer, nullable=False),
    Column("last_hash", String(64), nullable=False),
    # The first row chained with the audit key; NULL: an unkeyed trail.
    Column("keyed_from", Integer),
    # HMAC over last_id, last_hash and keyed_from; NULL while the trail is unkeyed.
    Column("mac", String(64)),
)

# Outside the chain: how far the anchor command ([audit] anchor_command) has taken the heads.
anchor = Table(
    "audit_anchor",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("delivered_id", Integer, nullable=False),  # the last row whose head the command took
    Column("failure", Text),  # why the last attempt failed; NULL once one succeeds
    Column("failed_at", String(40)),
)


def to_row(mapping: Any) -> AuditRow:
    return AuditRow(
        id=mapping["id"],
        time=datetime.fromisoformat(mapping["time"]),
        actor=mapping["actor"],
        action=mapping["action"],
        account=mapping["account"],
        outcome=mapping["outcome"],
        reason=mapping["reason"],
        detail=mapping["detail"],
        prev_hash=mapping["prev_hash"],
        hash=mapping["hash"],
    )


def sqlite_engine(url: URL) -> Engine:
    engine = create_engine(url, connect_args={"timeout": 30, "isolation_level": None})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Take the write lock at the start, so reading the head and appending are one atomic step.
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


_KEYED_HEAD_COLUMNS = ("keyed_from", "mac")


def add_head_columns(conn: Connection) -> None:
    """Upgrade a trail made before the audit key: its head gains `keyed_from` and `mac` (both NULL)."""
    present = {column["name"] for column in inspect(conn).get_columns(head.name)}
    for name in _KEYED_HEAD_COLUMNS:
        if name not in present:
            kind = head.c[name].type.compile(conn.dialect)
            conn.execute(text(f"ALTER TABLE {head.name} ADD COLUMN {name} {kind}"))


def _private_file(path: Path) -> Path:
    """Create `path` readable by its owner only (SQLite then gives its -wal and -shm files the same mode)."""
    try:
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    except OSError as exc:
        raise ConfigError([f"audit: cannot create {path}: {exc.strerror}"]) from None
    return path


def trail_directory(settings: Settings) -> Path | None:
    """The directory of a SQLite trail's file; None for a database server."""
    if settings.audit.url is None:
        return state_dir(settings)
    url = make_url(settings.audit.url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(url.database).parent


def audit_url(settings: Settings) -> URL:
    config = settings.audit
    if config.url is None:
        return URL.create("sqlite", database=str(_private_file(state_dir(settings) / DEFAULT_AUDIT_NAME)))
    url = make_url(config.url)
    password = config.password()
    return url.set(password=password.get_secret_value()) if password is not None else url
