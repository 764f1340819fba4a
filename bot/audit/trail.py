"""The audit trail: every action atp-bot takes, durable and tamper-evident, never with a secret.

Each row carries a hash over its canonical content and the previous row's hash, so editing, deleting
or inserting a row breaks the chain at that row. With the audit key (bot.audit.key, kept outside the
database) the hash is an HMAC-SHA256: whoever can write the database but lacks the key cannot re-chain
an edited trail. A one-row `audit_head` table holds the latest row id and hash, and (keyed) an HMAC
over both, so moving the head back to an earlier row after dropping rows from the end is detected
too. The head is updated in the same transaction as each append, which serialises concurrent writers
(threads, and processes sharing a SQLite file or a PostgreSQL database).

Trails written before the key existed (plain SHA-256) keep verifying, with a warning, until
`rekey()` verifies them and appends a keyed row that seals them: from that row on, every row is keyed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    create_engine,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from bot.audit.anchor import AnchorDelivery
from bot.audit.chain import GENESIS_HASH, head_mac, keyed_row_hash, row_hash, same_digest
from bot.audit.events import (
    AuditAction,
    AuditAnchor,
    AuditError,
    AuditEvent,
    AuditOutcome,
    AuditRow,
    AuditSink,
    AuditVerification,
    cli_actor,
    record_or_log,
)
from bot.audit.key import AuditKey, AuditKeyInit, audit_key_path, create_audit_key, load_audit_key
from bot.audit.schema import add_head_columns, audit_url, events, head, metadata, sqlite_engine, to_row
from bot.config import ConfigError, Settings
from bot.infra.controls import escape_controls
from bot.infra.dbschema import create_idempotently
from bot.infra.operator_command import command_environment
from bot.infra.redaction import redact

log = logging.getLogger(__name__)

MAX_FIELD_LENGTH = {"actor": 200, "action": 64, "account": 64, "outcome": 32, "reason": 64, "detail": 500}


def _clean(name: str, value: str | None, *, required: bool) -> str | None:
    if value is None or value == "":
        if required:
            raise ValueError(f"audit {name} must not be empty")
        return None
    # One line; control and format characters a peer sent are stored as visible escapes.
    text = escape_controls(" ".join(redact(str(value)).split()))
    limit = MAX_FIELD_LENGTH[name]
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class RekeyResult:
    verification: AuditVerification  # of the trail before the re-keyed row
    row: AuditRow | None = None  # the keyed row that seals the unkeyed ones; None: nothing was appended


class AuditTrail:
    def __init__(
        self, engine: Engine, key: AuditKey | None = None, anchor: AnchorDelivery | None = None
    ) -> None:
        self.engine = engine
        self.key = key
        self.anchor = anchor  # [audit] anchor_command: each new head is handed to it after the append
        try:
            create_idempotently(self._create_schema)
            if anchor is not None:
                anchor.start()
        except SQLAlchemyError as exc:
            raise AuditError(
                f"cannot open the audit trail {engine.url!r}: {exc.__class__.__name__}"
            ) from None

    def _create_schema(self) -> None:
        metadata.create_all(self.engine)
        with self.engine.begin() as conn:
            add_head_columns(conn)
            if conn.execute(select(head.c.id)).first() is None:
                conn.execute(insert(head).values(id=1, last_id=0, last_hash=GENESIS_HASH))

    @staticmethod
    def _locked_head(conn: Connection) -> Any:
        """The head row, locked until the transaction ends (SQLite: the whole database already is)."""
        return conn.execute(select(head).where(head.c.id == 1).with_for_update()).first()

    def _head_is_authentic(self, current: Any) -> bool:
        assert self.key is not None and current.keyed_from is not None
        expected = head_mac(self.key, current.last_id, current.last_hash, current.keyed_from)
        return same_digest(current.mac, expected)

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
        return to_row(values)

    def record(self, event: AuditEvent) -> AuditRow:
        """Append one event; raise AuditError if it cannot be made durable."""
        values = _event_values(event)
        try:
            with self.engine.begin() as conn:
                current = self._locked_head(conn)
                if current is None:
                    raise AuditError("the audit_head row is missing: run `atp-bot audit verify`")
                row = self._append(conn, current, values, self._chain_key(current))
        except SQLAlchemyError as exc:
            raise AuditError(f"cannot write to the audit trail: {_cause(exc)}") from None
        self._anchor_new_head()
        return row

    def _anchor_new_head(self) -> None:
        if self.anchor is not None:
            self.anchor.kick()

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
            return [to_row(row._mapping) for row in conn.execute(query)]

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
                rekeyed = AuditEvent(
                    actor=actor,
                    action=AuditAction.AUDIT_REKEY,
                    account=None,
                    outcome=AuditOutcome.OK,
                    detail=f"unkeyed rows up to {sealed}",
                )
                values = _event_values(rekeyed)
                rekey = RekeyResult(result, self._append(conn, current, values, self.key))
        except SQLAlchemyError as exc:
            raise AuditError(f"cannot write to the audit trail: {_cause(exc)}") from None
        self._anchor_new_head()
        return rekey

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
            if not same_digest(values["hash"], keyed_row_hash(self.key, values)):
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


def _event_values(event: AuditEvent) -> dict[str, Any]:
    """A new event's fields, cleaned; the chain fields are added under the append lock."""
    return {
        "time": datetime.now(UTC).isoformat(timespec="microseconds"),
        "actor": _clean("actor", event.actor, required=True),
        "action": _clean("action", str(event.action), required=True),
        "account": _clean("account", event.account, required=False),
        "outcome": _clean("outcome", str(event.outcome), required=True),
        "reason": _clean("reason", event.reason, required=False),
        "detail": _clean("detail", event.detail, required=False),
    }


def open_audit(settings: Settings) -> AuditTrail:
    url = audit_url(settings)
    try:
        engine = sqlite_engine(url) if url.get_backend_name() == "sqlite" else create_engine(url)
    except (SQLAlchemyError, ImportError) as exc:
        raise ConfigError([f"audit.url: cannot use {url!r}: {exc}"]) from None
    return AuditTrail(engine, load_audit_key(settings), _anchor_delivery(settings, engine))


def _anchor_delivery(settings: Settings, engine: Engine) -> AnchorDelivery | None:
    config = settings.audit
    if config.anchor_command is None:
        return None
    env = command_environment(settings, ())
    return AnchorDelivery(engine, config.anchor_command, config.anchor_timeout, env)


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


__all__ = [
    "AuditAction",
    "AuditAnchor",
    "AuditError",
    "AuditEvent",
    "AuditOutcome",
    "AuditRow",
    "AuditSink",
    "AuditTrail",
    "AuditVerification",
    "RekeyResult",
    "audit_url",
    "cli_actor",
    "init_audit_key",
    "open_audit",
    "record_or_log",
    "row_hash",
]
