"""The portal step: Defender for Identity (cloud) gets a saved password only when someone saves it in the
Microsoft Defender portal (no API writes the directory service account setting).

Unless the store is one the sensors read (`ata-center`), every save leaves the account's portal step
pending: a row per account in the state database (SQLite in the state directory; with replicas the
shared PostgreSQL, like the held approvals), so every process and replica sees it. Confirming it (the
Slack button, `atp-bot portal-done`, or MDI seen using the new password) is a conditional update: it
lands once, whoever asks, and whoever confirmed starts the follow-up checks. A new save of the account
replaces the row.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import Column, ColumnElement, Integer, MetaData, Table, Text, and_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, RowMapping
from sqlalchemy.exc import SQLAlchemyError

from bot.audit import AuditAction, AuditEvent, AuditOutcome, AuditSink, record_or_log
from bot.change.recovery import Recovery, Verdict
from bot.config import Settings
from bot.infra.dbschema import create_idempotently
from bot.infra.messages import MessageRef
from bot.infra.state_dir import shared_state_engine
from bot.store import CredentialMetadata

log = logging.getLogger(__name__)

PORTAL_FILE = "portal-steps.sqlite"
PORTAL_URL = "https://security.microsoft.com/settings/identities"
PORTAL_PATH = "Microsoft Defender portal > Settings > Identities > Directory service accounts"


def portal_instructions(username: str) -> str:
    """What the person does in the portal (plain text; the faces format it)."""
    return (
        f"{PORTAL_PATH} > {username} > enter the new password > Save ({PORTAL_URL}). Until then every "
        "sensor keeps using the old password."
    )


def portal_step_needed(settings: Settings) -> bool:
    """Whether a save still has to be copied into the portal: the sensors read only the ATA Center's."""
    return settings.store.backend != "ata-center"


def waiting_since(step: PortalStep) -> str:
    """E.g. "waiting for the portal step since 2026-12-08 14:05 UTC (saved by cli:alice)"."""
    return f"waiting for the portal step since {step.saved_at:%Y-%m-%d %H:%M} UTC (saved by {step.saved_by})"


def pending_steps(settings: Settings) -> dict[str, PortalStep]:
    """Every account's pending portal step, for `/atp status` and `atp-bot verify` (raises PortalError)."""
    if not portal_step_needed(settings):
        return {}
    steps = PortalSteps.for_settings(settings)
    try:
        return {step.account_id: step for step in steps.pending()}
    finally:
        steps.close()


class PortalError(Exception):
    """The portal steps cannot be read or written (safe text)."""


_metadata = MetaData()
_steps = Table(
    "portal_steps",
    _metadata,
    Column("account_id", Text, primary_key=True),
    Column("saved_by", Text, nullable=False),
    Column("saved_at", Text, nullable=False),  # ISO 8601 UTC: the save, and when the step became pending
    Column("thread", Text),  # JSON MessageRef: the channel message with the Done in the portal button
    Column("reminded", Integer, nullable=False),
    Column("confirmed_by", Text),  # NULL while pending
    Column("confirmed_at", Text),
    Column("evidence", Text),  # how MDI was seen using the password (automatic confirmation)
    # While pending, what the monitor saw of the sensors: the last credential error, then the first full
    # check without one (the sensors stopped logging them: MDI uses the new password).
    Column("errors_at", Text),
    Column("quiet_at", Text),
)


@dataclass(frozen=True)
class PortalStep:
    account_id: str
    saved_by: str
    saved_at: datetime
    thread: MessageRef | None = None
    reminded: bool = False
    confirmed_by: str | None = None
    confirmed_at: datetime | None = None
    evidence: str | None = None
    errors_at: datetime | None = None
    quiet_at: datetime | None = None

    @property
    def pending(self) -> bool:
        return self.confirmed_at is None


def _step(row: RowMapping) -> PortalStep:
    return PortalStep(
        account_id=row["account_id"],
        saved_by=row["saved_by"],
        saved_at=datetime.fromisoformat(row["saved_at"]),
        thread=MessageRef.model_validate_json(row["thread"]) if row["thread"] else None,
        reminded=bool(row["reminded"]),
        confirmed_by=row["confirmed_by"],
        confirmed_at=_moment(row["confirmed_at"]),
        evidence=row["evidence"],
        errors_at=_moment(row["errors_at"]),
        quiet_at=_moment(row["quiet_at"]),
    )


def _moment(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


class PortalSteps:
    """Every account's portal step (every replica's view of the same rows)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        create_idempotently(lambda: _metadata.create_all(engine))

    @classmethod
    def for_settings(cls, settings: Settings, directory: Path | None = None) -> PortalSteps:
        """Raises PortalError (the database cannot be opened)."""
        try:
            return cls(shared_state_engine(settings, PORTAL_FILE, directory))
        except (SQLAlchemyError, OSError) as exc:
            raise PortalError(f"the portal steps cannot be opened: {type(exc).__name__}") from None

    def open(self, account_id: str, saved_by: str, saved_at: datetime) -> None:
        """A save landed: the account's step is pending (replacing any earlier one)."""
        values = {
            "account_id": account_id,
            "saved_by": saved_by,
            "saved_at": saved_at.isoformat(),
            "thread": None,
            "reminded": 0,
            "confirmed_by": None,
            "confirmed_at": None,
            "evidence": None,
            "errors_at": None,
            "quiet_at": None,
        }
        with self._transaction() as db:
            dialect = postgresql if db.dialect.name == "postgresql" else sqlite
            statement = dialect.insert(_steps).values(**values)
            changed = {name: statement.excluded[name] for name in values if name != "account_id"}
            db.execute(statement.on_conflict_do_update(index_elements=["account_id"], set_=changed))

    def set_thread(self, account_id: str, saved_at: datetime, thread: MessageRef) -> None:
        """Where the channel message of this save is (for the button, reminders and follow-ups)."""
        with self._transaction() as db:
            db.execute(
                update(_steps).where(self._of(account_id, saved_at)).values(thread=thread.model_dump_json())
            )

    def get(self, account_id: str) -> PortalStep | None:
        with self._transaction() as db:
            row = db.execute(select(_steps).where(_steps.c.account_id == account_id)).mappings().first()
        return _step(row) if row else None

    def pending(self) -> list[PortalStep]:
        """Every pending step, oldest first."""
        query = select(_steps).where(_steps.c.confirmed_at.is_(None)).order_by(_steps.c.saved_at)
        with self._transaction() as db:
            return [_step(row) for row in db.execute(query).mappings()]

    def confirm(
        self,
        account_id: str,
        actor: str,
        at: datetime,
        evidence: str | None = None,
        saved_at: datetime | None = None,
    ) -> PortalStep | None:
        """Confirm the account's pending step (only the one of the save at `saved_at`, when given), at most
        once whoever asks: the step if this call confirmed it, else None (none pending)."""
        where = and_(_steps.c.account_id == account_id, _steps.c.confirmed_at.is_(None))
        if saved_at is not None:
            where = and_(where, _steps.c.saved_at == saved_at.isoformat())
        values = {"confirmed_by": actor, "confirmed_at": at.isoformat(), "evidence": evidence}
        return self._claim(account_id, where, values)

    def observe(self, account_id: str, at: datetime, *, errors: bool, all_clean: bool) -> None:
        """A monitor cycle's check of a pending account's sensors: credential errors seen at `at`, or
        (`all_clean`: every sensor answered without one) the first quiet check after the last error."""
        pending = and_(_steps.c.account_id == account_id, _steps.c.confirmed_at.is_(None))
        if errors:
            change = update(_steps).where(pending).values(errors_at=at.isoformat(), quiet_at=None)
        elif all_clean:
            quiet = and_(pending, _steps.c.errors_at.is_not(None), _steps.c.quiet_at.is_(None))
            change = update(_steps).where(quiet).values(quiet_at=at.isoformat())
        else:
            return
        with self._transaction() as db:
            db.execute(change)

    def take_reminder(self, account_id: str, saved_at: datetime) -> PortalStep | None:
        """The pending step, if this call is the one that reminds of it (once per save)."""
        where = and_(self._of(account_id, saved_at), _steps.c.confirmed_at.is_(None), _steps.c.reminded == 0)
        return self._claim(account_id, where, {"reminded": 1})

    def close(self) -> None:
        self._engine.dispose()

    def _claim(
        self, account_id: str, where: ColumnElement[bool], values: Mapping[str, object]
    ) -> PortalStep | None:
        with self._transaction() as db:
            if db.execute(update(_steps).where(where).values(**values)).rowcount != 1:
                return None
            row = db.execute(select(_steps).where(_steps.c.account_id == account_id)).mappings().one()
        return _step(row)

    @staticmethod
    def _of(account_id: str, saved_at: datetime) -> ColumnElement[bool]:
        return and_(_steps.c.account_id == account_id, _steps.c.saved_at == saved_at.isoformat())

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        """One transaction; a database error becomes PortalError (one safe line)."""
        try:
            with self._engine.begin() as db:
                yield db
        except SQLAlchemyError as exc:
            log.error("portal steps: database error: %s", type(exc).__name__)
            raise PortalError(f"the portal steps cannot be read or written ({type(exc).__name__})") from None


def portal_steps(settings: Settings, directory: Path) -> PortalSteps | None:
    """The portal steps of a configuration whose store the sensors do not read, else None."""
    return PortalSteps.for_settings(settings, directory) if portal_step_needed(settings) else None


def after_recovery(steps: PortalSteps | None, recovery: Recovery) -> Recovery:
    """A change cut short after its save landed waits for the portal step like any save (`recovery`
    is returned as it is)."""
    if recovery.saved is not None and recovery.verdict is Verdict.SAVED:
        open_step(steps, recovery.account_id, recovery.entry.actor, recovery.saved.saved_at)
    return recovery


def open_step(steps: PortalSteps | None, account_id: str, actor: str, saved_at: datetime) -> bool:
    """After a save: make the account's portal step pending. Whether one is (None: no step needed). A
    database failure is logged: the password is saved, and the faces still say what to do."""
    if steps is None:
        return False
    try:
        steps.open(account_id, actor, saved_at)
    except PortalError as exc:
        log.error("account %s: the pending portal step cannot be recorded: %s", account_id, exc)
    return True


def remember_thread(steps: PortalSteps | None, saved: CredentialMetadata, thread: MessageRef) -> None:
    """Where the channel was told of a save waiting for the portal step (reminder, automatic
    confirmation and follow-ups go to that thread). A database failure is logged: the step stays."""
    if steps is None:
        return
    try:
        steps.set_thread(saved.account_id, saved.saved_at, thread)
    except PortalError as exc:
        log.error("account %s: the portal step's message cannot be recorded: %s", saved.account_id, exc)


def confirm_step(
    steps: PortalSteps,
    audit: AuditSink,
    account_id: str,
    actor: str,
    at: datetime,
    evidence: str | None = None,
    saved_at: datetime | None = None,
) -> PortalStep | None:
    """Confirm the account's pending portal step (of the save at `saved_at`, when given), once whoever
    asks, audited as `portal-updated` (who, or atp-bot with what it saw). None when none is pending."""
    step = steps.confirm(account_id, actor, at, evidence, saved_at)
    if step is None:
        return None
    detail = evidence or f"done in the portal, confirmed by {actor}"
    updated = AuditEvent(
        actor=actor,
        action=AuditAction.PORTAL_UPDATED,
        account=account_id,
        outcome=AuditOutcome.OK,
        detail=f"{detail}; saved by {step.saved_by} at {step.saved_at:%Y-%m-%d %H:%M} UTC",
    )
    record_or_log(audit, updated)
    log.info("account %s: the portal step is confirmed (%s)", account_id, detail)
    return step
