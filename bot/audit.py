"""The audit trail: every action atp-bot takes, durable and tamper-evident, never with a secret.

Each row carries a hash over its canonical content and the previous row's hash, so editing, deleting
or inserting a row breaks the chain at that row. With the audit key (bot.audit_key, kept outside the
database) the hash is an HMAC-SHA256: whoever can write the database but lacks the key cannot re-chain
an edited trail. A one-row `audit_head` table holds the latest row id and hash, and (keyed) an HMAC
over both, so moving the head back to an earlier row after dropping rows from the end is detected
too. The head is updated in the same transaction as each append, which serialises concurrent writers
(threads, and processes sharing a SQLite file or a PostgreSQL database).

Trails written before the key existed (plain SHA-256) keep verifying, with a warning, until
`rekey()` verifies them and appends a keyed row that seals them: from that row on, every row is keyed.
"""

from __future__ import annotations

import getpass
import hashlib
import hmac
import json
import logging
import os
import re
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
    func,
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from bot.audit_key import AuditKey, AuditKeyInit, audit_key_path, create_audit_key, load_audit_key
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
    AUDIT_INIT = "audit-init"
    AUDIT_REKEY = "audit-rekey"
    ANNOUNCE = "announce"  # a CLI change told in the Slack channel (or why it could not be)
    # Two-person approval (bot.approvals): each with its actor (requester, approver, or atp-bot).
    APPROVAL_REQUEST = "approval-request"
    APPROVE = "approve"
    DENY = "deny"
    APPROVAL_CANCEL = "approval-cancel"
    APPROVAL_EXPIRE = "approval-expire"
    BREAK_GLASS = "break-glass"  # a CLI change saved without approval (--break-glass --reason)


class AuditOutcome(StrEnum):
    OK = "ok"
    FAILED = "failed"
    REFUSED = "refused"
    ERROR = "error"
    DENIED = "denied"  # an authorization refusal (a Slack user or channel not allowed)


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
    # The first row chained with the audit key; NULL: an unkeyed trail.
    Column("keyed_from", Integer),
    # HMAC over last_id, last_hash and keyed_from; NULL while the trail is unkeyed.
    Column("mac", String(64)),
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
class AuditAnchor:
    """A row and its hash noted outside the trail (`ID:HASH`), which a later verify must still find."""

    id: int
    hash: str

    @classmethod
    def parse(cls, text: str) -> AuditAnchor:
        row, _, digest = text.partition(":")
        if not row.isdigit() or int(row) < 1 or re.fullmatch(r"[0-9a-f]{64}", digest) is None:
            raise ValueError(f"{text!r}: expected ID:HASH, a row number and its 64-character hex hash")
        return cls(int(row), digest)

    def __str__(self) -> str:
        return f"{self.id}:{self.hash}"


@dataclass(frozen=True)
class AuditVerification:
    intact: bool
    rows: int
    first_broken_id: int | None = None
    problem: str | None = None
    head_hash: str | None = None  # of an intact trail: note `rows:head_hash` elsewhere as an anchor
    keyed_from: int | None = None  # the first row chained with the audit key; None: unkeyed
    warning: str | None = None  # an intact but weaker trail (no key, or not re-keyed yet)
    key_missing: bool = False  # a keyed trail, but no key here to check it with (configuration)

    @property
    def anchor(self) -> str | None:
        """`ID:HASH` of the head of an intact, non-empty trail: note it elsewhere for `verify --anchor`."""
        return f"{self.rows}:{self.head_hash}" if self.intact and self.rows else None


def _canonical(values: dict[str, Any]) -> bytes:
    """A row's content, its id and the previous hash as canonical JSON."""
    return json.dumps(
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
    ).encode("utf-8")


def row_hash(values: dict[str, Any]) -> str:
    """The unkeyed hash of a row: SHA-256 over its canonical JSON."""
    return hashlib.sha256(_canonical(values)).hexdigest()


def keyed_row_hash(key: AuditKey, values: dict[str, Any]) -> str:
    """The keyed hash of a row: HMAC-SHA256 over its canonical JSON."""
    return key.mac(_canonical(values))


def head_mac(key: AuditKey, last_id: int, last_hash: str, keyed_from: int) -> str:
    """The head's HMAC. Its input starts with a string, a row's with a number: neither passes as the other."""
    message = json.dumps(["audit-head", last_id, last_hash, keyed_from], separators=(",", ":"))
    return key.mac(message.encode("ascii"))


def _same(a: str | None, b: str) -> bool:
    return a is not None and hmac.compare_digest(a, b)


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


_KEYED_HEAD_COLUMNS = ("keyed_from", "mac")


def _add_head_columns(conn: Connection) -> None:
    """Upgrade a trail made before the audit key: its head gains `keyed_from` and `mac` (both NULL)."""
    present = {column["name"] for column in inspect(conn).get_columns(head.name)}
    for name in _KEYED_HEAD_COLUMNS:
        if name not in present:
            kind = head.c[name].type.compile(conn.dialect)
            conn.execute(text(f"ALTER TABLE {head.name} ADD COLUMN {name} {kind}"))


@dataclass(frozen=True)
class RekeyResult:
    verification: AuditVerification  # of the trail before the re-keyed row
    row: AuditRow | None = None  # the keyed row that seals the unkeyed ones; None: nothing was appended


class AuditTrail:
    def __init__(self, engine: Engine, key: AuditKey | None = None) -> None:
        self.engine = engine
        self.key = key
        try:
            create_idempotently(self._create_schema)
        except SQLAlchemyError as exc:
            raise AuditError(
                f"cannot open the audit trail {engine.url!r}: {exc.__class__.__name__}"
            ) from None

    def _create_schema(self) -> None:
        metadata.create_all(self.engine)
        with self.engine.begin() as conn:
            _add_head_columns(conn)
            if conn.execute(select(head.c.id)).first() is None:
                conn.execute(insert(head).values(id=1, last_id=0, last_hash=GENESIS_HASH))

    @staticmethod
    def _locked_head(conn: Connection) -> Any:
        """The head row, locked until the transaction ends (SQLite: the whole database already is)."""
        return conn.execute(select(head).where(head.c.id == 1).with_for_update()).first()

    def _head_is_authentic(self, current: Any) -> bool:
        assert self.key is not None and current.keyed_from is not None
        expected = head_mac(self.key, current.last_id, current.last_hash, current.keyed_from)
        return _same(current.mac, expected)

    def _chain_key(self, current: Any) -> AuditKey | None:
        """The key to chain the next row with; None: an unkeyed trail stays unkeyed until `rekey()`."""
        if current.keyed_from is None and (current.last_id > 0 or self.key is None):
            return None
        if self.key is None:
            raise AuditError(
                f"the trail is keyed from row {current.keyed_from} but no audit key is available "
                "([audit] key_env or key_file): nothing more can be recorded"
            )
        if current.keyed_from is not None and not self._head_is_authentic(current):
            raise AuditError(
                "the audit head does not match its HMAC (moved or forged): run `atp-bot audit verify`"
            )
        return self.key

    @staticmethod
    def _append(conn: Connection, current: Any, values: dict[str, Any], key: AuditKey | None) -> AuditRow:
        values["id"] = current.last_id + 1
        values["prev_hash"] = current.last_hash
        values["hash"] = row_hash(values) if key is None else keyed_row_hash(key, values)
        keyed_from = current.keyed_from
        mac = None
        if key is not None:
            keyed_from = keyed_from or values["id"]
            mac = head_mac(key, values["id"], values["hash"], keyed_from)
        conn.execute(insert(events).values(**values))
        conn.execute(
            update(head)
            .where(head.c.id == 1)
            .values(last_id=values["id"], last_hash=values["hash"], keyed_from=keyed_from, mac=mac)
        )
        return _to_row(values)

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
        values = _event_values(actor, action, account, outcome, reason, detail)
        try:
            with self.engine.begin() as conn:
                current = self._locked_head(conn)
                if current is None:
                    raise AuditError("the audit_head row is missing: run `atp-bot audit verify`")
                return self._append(conn, current, values, self._chain_key(current))
        except SQLAlchemyError as exc:
            raise AuditError(f"cannot write to the audit trail: {_cause(exc)}") from None

    def keyed_from(self) -> int | None:
        """The first row chained with the audit key, as the head says; None: an unkeyed trail."""
        with self.engine.connect() as conn:
            value = conn.execute(select(head.c.keyed_from).where(head.c.id == 1)).scalar()
        return int(value) if value is not None else None

    def recent(
        self, account: str | None = None, limit: int = 50, *, denied: bool | None = None
    ) -> list[AuditRow]:
        """The latest events, newest first. `denied`: True only authorization refusals, False all but them."""
        query = select(events).order_by(events.c.id.desc()).limit(max(1, limit))
        if account is not None:
            query = query.where(events.c.account == account)
        if denied is not None:
            is_denied = events.c.outcome == AuditOutcome.DENIED.value
            query = query.where(is_denied if denied else ~is_denied)
        with self.engine.connect() as conn:
            return [_to_row(row._mapping) for row in conn.execute(query)]

    def last_save(self, account: str) -> int | None:
        """The id of the account's latest successful save (None: none recorded). Shared by every replica
        and the CLI, unlike a store's metadata, so an approval can tell whether a newer save happened."""
        query = select(func.max(events.c.id)).where(
            events.c.account == account,
            events.c.action == AuditAction.SAVE.value,
            events.c.outcome == AuditOutcome.OK.value,
        )
        with self.engine.connect() as conn:
            found = conn.execute(query).scalar()
        return int(found) if found is not None else None

    def verify(self, anchor: AuditAnchor | None = None) -> AuditVerification:
        """Walk the chain from the first row; report the first row (or the head) that is wrong.

        It holds the append lock, so appends wait and the rows and the head are seen as of one moment.
        """
        try:
            with self.engine.begin() as conn:
                return self._verify_locked(conn, self._locked_head(conn), anchor)
        except SQLAlchemyError as exc:
            raise AuditError(f"cannot read the audit trail: {_cause(exc)}") from None

    def rekey(self, actor: str) -> RekeyResult:
        """Seal an intact unkeyed trail with a keyed `audit-rekey` row; from it on every row is keyed.

        Nothing is appended to a broken, empty or already keyed trail (the result says which).
        """
        if self.key is None:
            raise AuditError("no audit key: create one with `atp-bot audit init` first")
        try:
            with self.engine.begin() as conn:
                current = self._locked_head(conn)
                result = self._verify_locked(conn, current, None)
                if not result.intact or result.keyed_from is not None or result.rows == 0:
                    return RekeyResult(result)
                sealed = f"{result.rows}:{result.head_hash}"
                values = _event_values(
                    actor,
                    AuditAction.AUDIT_REKEY,
                    None,
                    AuditOutcome.OK,
                    None,
                    f"unkeyed rows up to {sealed}",
                )
                return RekeyResult(result, self._append(conn, current, values, self.key))
        except SQLAlchemyError as exc:
            raise AuditError(f"cannot write to the audit trail: {_cause(exc)}") from None

    def _verify_locked(self, conn: Connection, current: Any, anchor: AuditAnchor | None) -> AuditVerification:
        if current is None:
            return AuditVerification(False, 0, None, "the audit_head row is missing (deleted)")
        keyed_from = current.keyed_from
        if keyed_from is not None and self.key is None:
            no_key = (
                f"the trail is keyed from row {keyed_from} but no audit key is configured "
                "([audit] key_env or key_file): it cannot be checked"
            )
            return AuditVerification(False, 0, None, no_key, keyed_from=keyed_from, key_missing=True)
        prev_hash, count = GENESIS_HASH, 0
        for row in conn.execute(select(events).order_by(events.c.id)):
            values = dict(row._mapping)
            broken = self._broken_row(values, count + 1, prev_hash, keyed_from, anchor)
            if broken is not None:
                return AuditVerification(False, count, values["id"], broken, keyed_from=keyed_from)
            prev_hash, count = values["hash"], count + 1
        problem = self._end_problem(current, count, prev_hash, anchor)
        if problem is not None:
            return AuditVerification(False, count, count + 1, problem, keyed_from=keyed_from)
        return AuditVerification(
            True, count, head_hash=prev_hash, keyed_from=keyed_from, warning=self._weakness(keyed_from, count)
        )

    def _broken_row(
        self,
        values: dict[str, Any],
        expected_id: int,
        prev_hash: str,
        keyed_from: int | None,
        anchor: AuditAnchor | None,
    ) -> str | None:
        """Why this row breaks the chain, or None."""
        if values["id"] != expected_id:
            return f"row {expected_id} is missing (deleted or renumbered)"
        if values["prev_hash"] != prev_hash:
            return "does not link to the row before it (a row was removed or inserted)"
        if keyed_from is not None and values["id"] >= keyed_from:
            assert self.key is not None
            if not _same(values["hash"], keyed_row_hash(self.key, values)):
                return (
                    "its keyed hash does not match its content (edited and re-chained without the key, "
                    "or the audit key is not the one the trail was written with)"
                )
        elif values["hash"] != row_hash(values):
            return "its content does not match its hash (edited)"
        if anchor is not None and values["id"] == anchor.id and values["hash"] != anchor.hash:
            return f"its hash differs from the anchor {anchor} (the trail was rewritten)"
        return None

    def _end_problem(
        self, current: Any, count: int, last_hash: str, anchor: AuditAnchor | None
    ) -> str | None:
        """What is wrong after the last row: an anchor beyond it, or a head that does not point to it."""
        if anchor is not None and anchor.id > count:
            return f"the anchor's row {anchor.id} is missing: the trail ends at row {count} (rows removed)"
        if (current.last_id, current.last_hash) != (count, last_hash):
            return (
                f"the trail ends at row {count} but its head says row {current.last_id} "
                "(rows removed from the end)"
            )
        if current.keyed_from is not None and not self._head_is_authentic(current):
            return (
                f"the head (row {count}) does not match its HMAC: it was moved back or forged "
                "(rows removed from the end?)"
            )
        return None

    def _weakness(self, keyed_from: int | None, count: int) -> str | None:
        """What an intact trail is not protected against yet."""
        if keyed_from is not None:
            return None
        if self.key is None:
            return (
                "no audit key: the chain is unkeyed, so whoever can write the database can rewrite it "
                "unnoticed; create a key with `atp-bot audit init`"
                + (", then run `atp-bot audit rekey`" if count else "")
            )
        if count:
            return "the chain is unkeyed (written before the audit key): run `atp-bot audit rekey`"
        return None


def _cause(exc: SQLAlchemyError) -> object:
    return exc.orig if isinstance(exc, DBAPIError) else exc


def _event_values(
    actor: str, action: str, account: str | None, outcome: str, reason: str | None, detail: str | None
) -> dict[str, Any]:
    """A new event's fields, cleaned; the chain fields are added under the append lock."""
    return {
        "time": datetime.now(UTC).isoformat(timespec="microseconds"),
        "actor": _clean("actor", actor, required=True),
        "action": _clean("action", str(action), required=True),
        "account": _clean("account", account, required=False),
        "outcome": _clean("outcome", str(outcome), required=True),
        "reason": _clean("reason", reason, required=False),
        "detail": _clean("detail", detail, required=False),
    }


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
    return AuditTrail(engine, load_audit_key(settings))


def init_audit_key(settings: Settings) -> AuditKeyInit:
    """Create the audit key unless it exists. A keyed trail whose key is lost gets no new one: rows
    keyed with the lost key would never verify with it, so the key must come back from its backup."""
    trail = open_audit(settings)
    keyed_from = trail.keyed_from() if trail.key is None else None
    trail.engine.dispose()
    if keyed_from is not None:
        variable = f"${settings.audit.key_env} nor " if settings.audit.key_env else ""
        raise ConfigError(
            [
                f"audit: the trail is keyed from row {keyed_from} but its key is missing (neither "
                f"{variable}{audit_key_path(settings)}): restore the key from its backup; a new key "
                "would not verify the trail"
            ]
        )
    return create_audit_key(settings)
