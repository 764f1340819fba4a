"""The audit trail: every action atp-bot takes, durable and tamper-evident, never with a secret.

Each row carries a SHA-256 over its canonical content and the previous row's hash, so editing,
deleting or inserting a row breaks the chain at that row. A one-row `audit_head` table holds the
latest row id and hash; it is updated in the same transaction as each append, which both serialises
concurrent writers (threads, and processes sharing a SQLite file or a PostgreSQL database) and lets
`verify()` notice rows removed from the end.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

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
    insert,
    select,
    update,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from bot.config import ConfigError, Settings
from bot.dbschema import create_idempotently
from bot.redaction import redact
from bot.state import state_dir

log = logging.getLogger(__name__)

DEFAULT_AUDIT_NAME = "audit.sqlite"
GENESIS_HASH = "0" * 64
MAX_FIELD_LENGTH = {"actor": 200, "action": 64, "account": 64, "outcome": 32, "reason": 64, "detail": 500}


def cli_actor() -> str:
    """The actor string for a command run from a shell: `cli:<login name>`."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"cli:{user}"


class AuditAction(StrEnum):
    TEST = "test"
    SAVE = "save"
    CHANGE = "change"
    START_SERVICE = "start-service"
    CHECK = "check"
    ALERT = "alert"
    DENIED = "denied"
    HISTORY = "history"
    STORE_INIT = "store-init"
    STORE_ROTATE_KEY = "store-rotate-key"
    LOCKOUT_GUARD = "lockout-guard"
    INTERRUPTED = "interrupted"  # a change cut short by a crash, resolved at the next start
    ANNOUNCE = "announce"  # a CLI change told in the Slack channel (or why it could not be)


class AuditOutcome(StrEnum):
    OK = "ok"
    FAILED = "failed"
    REFUSED = "refused"
    ERROR = "error"


class AuditSink(Protocol):
    """Anything that records audit events (the trail itself, or a test's recorder)."""

    def record(
        self,
        actor: str,
        action: str,
        account: str | None,
        outcome: str,
        reason: str | None = None,
        detail: str | None = None,
    ) -> object: ...


def record_or_log(
    audit: AuditSink,
    actor: str,
    action: str,
    account: str | None,
    outcome: str,
    reason: str | None = None,
    detail: str | None = None,
) -> None:
    """Audit something that has already happened (a save, a service start, an alert): an unavailable
    trail is logged loudly but never raised, because what happened cannot be undone."""
    try:
        audit.record(actor, action, account, outcome, reason, detail)
    except AuditError as exc:
        log.error(
            "audit trail unavailable; not recorded: %s %s %s %s: %s", actor, action, account, outcome, exc
        )


class AuditError(Exception):
    """The audit trail cannot be written or read; the message names the database, never a secret."""


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
)


@dataclass(frozen=True)
class AuditRow:
    id: int
    time: datetime  # UTC
    actor: str
    action: str
    account: str | None
    outcome: str
    reason: str | None
    detail: str | None
    prev_hash: str
    hash: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "time": self.time.isoformat(),
            "actor": self.actor,
            "action": self.action,
            "account": self.account,
            "outcome": self.outcome,
            "reason": self.reason,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class AuditVerification:
    intact: bool
    rows: int
    first_broken_id: int | None = None
    problem: str | None = None
    head_hash: str | None = None  # of an intact trail: note it elsewhere to anchor the chain


def row_hash(values: dict[str, Any]) -> str:
    """SHA-256 over the canonical JSON of a row's content, including its id and the previous hash."""
    canonical = json.dumps(
        [
            values["id"],
            values["time"],
            values["actor"],
            values["action"],
            values["account"],
            values["outcome"],
            values["reason"],
            values["detail"],
            values["prev_hash"],
        ],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _clean(name: str, value: str | None, *, required: bool) -> str | None:
    if value is None or value == "":
        if required:
            raise ValueError(f"audit {name} must not be empty")
        return None
    text = " ".join(redact(str(value)).split())  # one line, no control characters
    limit = MAX_FIELD_LENGTH[name]
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _to_row(mapping: Any) -> AuditRow:
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


def _sqlite_engine(url: URL) -> Engine:
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


class AuditTrail:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        try:
            create_idempotently(self._create_schema)
        except SQLAlchemyError as exc:
            raise AuditError(
                f"cannot open the audit trail {engine.url!r}: {exc.__class__.__name__}"
            ) from None

    def _create_schema(self) -> None:
        metadata.create_all(self.engine)
        with self.engine.begin() as conn:
            if conn.execute(select(head.c.id)).first() is None:
                conn.execute(insert(head).values(id=1, last_id=0, last_hash=GENESIS_HASH))

    def record(
        self,
        actor: str,
        action: str,
        account: str | None,
        outcome: str,
        reason: str | None = None,
        detail: str | None = None,
    ) -> AuditRow:
        """Append one event; raise AuditError if it cannot be made durable."""
        values: dict[str, Any] = {
            "time": datetime.now(UTC).isoformat(timespec="microseconds"),
            "actor": _clean("actor", actor, required=True),
            "action": _clean("action", str(action), required=True),
            "account": _clean("account", account, required=False),
            "outcome": _clean("outcome", str(outcome), required=True),
            "reason": _clean("reason", reason, required=False),
            "detail": _clean("detail", detail, required=False),
        }
        try:
            with self.engine.begin() as conn:
                current = conn.execute(select(head).where(head.c.id == 1).with_for_update()).one()
                values["id"] = current.last_id + 1
                values["prev_hash"] = current.last_hash
                values["hash"] = row_hash(values)
                conn.execute(insert(events).values(**values))
                conn.execute(
                    update(head).where(head.c.id == 1).values(last_id=values["id"], last_hash=values["hash"])
                )
        except SQLAlchemyError as exc:
            cause = exc.orig if isinstance(exc, DBAPIError) else exc
            raise AuditError(f"cannot write to the audit trail: {cause}") from None
        return _to_row(values)

    def recent(self, account: str | None = None, limit: int = 50) -> list[AuditRow]:
        """The latest events, newest first."""
        query = select(events).order_by(events.c.id.desc()).limit(max(1, limit))
        if account is not None:
            query = query.where(events.c.account == account)
        with self.engine.connect() as conn:
            return [_to_row(row._mapping) for row in conn.execute(query)]

    def verify(self) -> AuditVerification:
        """Walk the chain from the first row; report the first row whose hash or link is wrong."""
        prev_hash, expected_id, count = GENESIS_HASH, 1, 0
        with self.engine.connect() as conn:
            for row in conn.execute(select(events).order_by(events.c.id)):
                values = dict(row._mapping)
                if values["id"] != expected_id:
                    return AuditVerification(
                        False, count, values["id"], f"row {expected_id} is missing (deleted or renumbered)"
                    )
                if values["prev_hash"] != prev_hash:
                    return AuditVerification(
                        False,
                        count,
                        values["id"],
                        "does not link to the row before it (a row was removed or inserted)",
                    )
                if row_hash(values) != values["hash"]:
                    return AuditVerification(
                        False, count, values["id"], "its content does not match its hash (edited)"
                    )
                prev_hash, expected_id, count = values["hash"], expected_id + 1, count + 1
            current = conn.execute(select(head).where(head.c.id == 1)).first()
        if current is None or (current.last_id, current.last_hash) != (count, prev_hash):
            last = current.last_id if current is not None else "?"
            return AuditVerification(
                False,
                count,
                count + 1,
                f"the trail ends at row {count} but its head says row {last} (rows removed from the end)",
            )
        return AuditVerification(True, count, head_hash=prev_hash)


def _private_file(path: Path) -> Path:
    """Create `path` readable by its owner only (SQLite then gives its -wal and -shm files the same mode)."""
    try:
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    except OSError as exc:
        raise ConfigError([f"audit: cannot create {path}: {exc.strerror}"]) from None
    return path


def audit_url(settings: Settings) -> URL:
    config = settings.audit
    if config.url is None:
        return URL.create("sqlite", database=str(_private_file(state_dir(settings) / DEFAULT_AUDIT_NAME)))
    url = make_url(config.url)
    password = config.password()
    return url.set(password=password.get_secret_value()) if password is not None else url


def open_audit(settings: Settings) -> AuditTrail:
    url = audit_url(settings)
    try:
        engine = _sqlite_engine(url) if url.get_backend_name() == "sqlite" else create_engine(url)
    except (SQLAlchemyError, ImportError) as exc:
        raise ConfigError([f"audit.url: cannot use {url!r}: {exc}"]) from None
    return AuditTrail(engine)
