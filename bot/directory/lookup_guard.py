"""Keeps atp-bot from ever locking out a lookup account: every bind as a lookup account passes here.

A refused lookup bind ends the read at once (no other DC is tried) and suspends every later bind with
that lookup account, in every process: the suspension is kept in the lockout guard's ledger (SQLite in
the state directory, or the replicas' shared PostgreSQL database). It ends when the lookup password
source changes, when the lockout observation window has passed since the refusal, or by `atp-bot guard
reset --lookup` (audited).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from ldap3 import Connection
from pydantic import SecretStr
from sqlalchemy import Column, Integer, MetaData, Table, Text, delete, insert, select, update
from sqlalchemy.engine import Connection as DbConnection
from sqlalchemy.engine import Engine, Row
from sqlalchemy.exc import SQLAlchemyError

from bot.config import AccountConfig, DomainController
from bot.directory.ad_errors import decode_bind_failure
from bot.directory.connection import open_session, send_bind
from bot.infra.dbschema import create_idempotently, db_error_summary
from bot.infra.files import write_synced
from bot.infra.state_dir import private_file

log = logging.getLogger(__name__)

# Without a lockOutObservationWindow read from the domain before the refusal: AD's default (30 minutes).
DEFAULT_WINDOW = timedelta(minutes=30)
KEY_FILE = "lookup-fingerprint.key"
WRONG_PASSWORD = "the lookup account's password is wrong"  # noqa: S105 (words, not a password)

_metadata = MetaData()
_suspensions = Table(
    "lookup_suspensions",
    _metadata,
    Column("lookup_account", Text, primary_key=True),  # lookup_username, lower case
    Column("since", Text, nullable=False),  # ISO 8601 UTC
    Column("until", Text, nullable=False),
    Column("dc", Text, nullable=False),
    Column("detail", Text, nullable=False),  # AD's reason, decoded (never a secret)
    Column("announced", Integer, nullable=False),  # 1 once a monitor queued the channel's notice
)
# Per lookup account and fingerprint key (one per state directory): the password source's fingerprint
# when that host first knew of the suspension.
_sources = Table(
    "lookup_suspension_sources",
    _metadata,
    Column("lookup_account", Text, primary_key=True),
    Column("key_id", Text, primary_key=True),
    Column("fingerprint", Text, nullable=False),
)
_windows = Table(
    "lookup_observation_windows",
    _metadata,
    Column("lookup_account", Text, primary_key=True),
    Column("seconds", Integer, nullable=False),  # the domain's lockOutObservationWindow, last read
)


@dataclass(frozen=True)
class LookupSuspension:
    lookup_account: str
    since: datetime
    until: datetime
    dc: str
    detail: str
    announced: bool = False

    @property
    def message(self) -> str:
        return (
            f"{self.lookup_account}: {WRONG_PASSWORD}: {self.dc} refused it ({self.detail}). atp-bot "
            "makes no more binds with it until its password source (lookup_password_env or "
            f"lookup_password_file) changes or until {self.until:%Y-%m-%d %H:%M} UTC."
        )


class LookupBlocked(Exception):
    """No bind as the lookup account: it is suspended (`suspension`), or the ledger cannot say."""

    def __init__(self, message: str, suspension: LookupSuspension | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.suspension = suspension


def lookup_key(account: AccountConfig) -> str:
    assert account.lookup_username is not None
    return account.lookup_username.lower()


def reading_with(accounts: Iterable[AccountConfig], lookup_account: str) -> tuple[str, ...]:
    """The ids of the accounts read with this lookup account (`lookup_key`)."""
    return tuple(a.id for a in accounts if a.lookup_username and lookup_key(a) == lookup_account)


def _suspension(row: Row[Any]) -> LookupSuspension:
    values = row._mapping
    return LookupSuspension(
        str(values["lookup_account"]),
        datetime.fromisoformat(values["since"]),
        datetime.fromisoformat(values["until"]),
        str(values["dc"]),
        str(values["detail"]),
        bool(values["announced"]),
    )


class LookupGuard:
    """The lookup accounts' suspensions, in the lockout guard's ledger (`engine`).

    "The password source changed" is told by a keyed fingerprint: HMAC-SHA256 of the password under a
    random key kept in the state directory (`lookup-fingerprint.key`, mode 0600), never in the ledger.
    The ledger so holds nothing that can be tested against guessed passwords (a plain or salted hash
    could be, by whoever reads the shared database), and a file rewritten with the same password is no
    change. Each state directory has its own key: a replica compares only its own fingerprints, and one
    that learns of a suspension it did not cause takes its current password as the refused one.
    """

    def __init__(
        self,
        engine: Engine,
        key_dir: Path | None,
        clock: Callable[[], datetime],
        *,
        ledger_file: Path | None = None,
    ) -> None:
        self._engine = engine
        self._key_dir = key_dir
        self._clock = clock
        self._ledger_file = ledger_file
        self._ready = False
        self._windows_noted: dict[str, int] = {}

    @property
    def where(self) -> str:
        return "the state directory" if self._engine.dialect.name == "sqlite" else "the shared database"

    def _prepare(self) -> None:
        if not self._ready:
            if self._ledger_file is not None:
                private_file(self._ledger_file)
            create_idempotently(lambda: _metadata.create_all(self._engine))
            self._ready = True

    def _key(self) -> bytes:
        """The fingerprint key, made on first use (atomically: two processes end up with one key)."""
        if self._key_dir is None:
            raise OSError(0, "no state directory for the fingerprint key")
        path = self._key_dir / KEY_FILE
        if not path.exists():
            draft = self._key_dir / f"{KEY_FILE}.{os.getpid()}.tmp"
            write_synced(draft, base64.b64encode(os.urandom(32)).decode("ascii"))
            try:
                os.link(draft, path)
            except FileExistsError:
                pass
            finally:
                draft.unlink()
        try:
            return base64.b64decode(path.read_text(encoding="ascii"), validate=True)
        except (ValueError, UnicodeDecodeError):
            raise OSError(0, f"{path} is not a fingerprint key") from None

    def _fingerprint(self, name: str, password: SecretStr) -> tuple[str, str]:
        """(key id, fingerprint) of this lookup account's current password under this host's key."""
        key = self._key()
        key_id = hashlib.sha256(b"atp-bot lookup fingerprint key id\0" + key).hexdigest()[:16]
        message = name.encode() + b"\0" + password.get_secret_value().encode()
        return key_id, hmac.new(key, message, hashlib.sha256).hexdigest()

    def check(self, account: AccountConfig, password: SecretStr) -> None:
        """Raise LookupBlocked while the lookup account is suspended for this password, or when the
        ledger cannot be read (fail closed); lift the suspension once its source has changed."""
        name = lookup_key(account)
        try:
            self._prepare()
            with self._engine.begin() as db:
                suspension = self._check(db, name, password)
        except (SQLAlchemyError, OSError) as exc:
            log.error("lookup guard: cannot read %s: %s", self.where, db_error_summary(exc))
            raise LookupBlocked(
                f"{name}: no bind as the lookup account: atp-bot cannot read whether it is suspended "
                f"({self.where} is unavailable: {db_error_summary(exc)})"
            ) from None
        if suspension is not None:
            raise _Suspended(suspension)

    def _check(self, db: DbConnection, name: str, password: SecretStr) -> LookupSuspension | None:
        """The suspension in force for this password, if any (this host's baseline noted on first sight)."""
        row = db.execute(select(_suspensions).where(_suspensions.c.lookup_account == name)).first()
        if row is None:
            return None
        suspension = _suspension(row)
        if suspension.until <= self._clock():
            _forget(db, name)
            return None
        key_id, fingerprint = self._fingerprint(name, password)
        mine = (_sources.c.lookup_account == name) & (_sources.c.key_id == key_id)
        baseline = db.execute(select(_sources.c.fingerprint).where(mine)).scalar()
        if baseline is None:
            db.execute(insert(_sources).values(lookup_account=name, key_id=key_id, fingerprint=fingerprint))
        elif not hmac.compare_digest(baseline, fingerprint):
            log.warning("lookup account %s: its password source changed; its suspension is lifted", name)
            _forget(db, name)
            return None
        return suspension

    def refused(self, account: AccountConfig, password: SecretStr, dc: str, detail: str) -> LookupBlocked:
        """Record that `dc` refused the lookup bind: the suspension starts now (replacing any older one)."""
        name = lookup_key(account)
        now = self._clock()
        try:
            self._prepare()
            key_id, fingerprint = self._fingerprint(name, password)
            with self._engine.begin() as db:
                seconds = db.execute(select(_windows.c.seconds).where(_windows.c.lookup_account == name))
                window = max(DEFAULT_WINDOW, timedelta(seconds=seconds.scalar() or 0))
                suspension = LookupSuspension(name, now, now + window, dc, detail)
                _forget(db, name)
                db.execute(insert(_suspensions).values(_row(suspension)))
                source = {"lookup_account": name, "key_id": key_id, "fingerprint": fingerprint}
                db.execute(insert(_sources).values(source))
        except (SQLAlchemyError, OSError) as exc:
            log.error("lookup guard: cannot record the suspension of %s: %s", name, db_error_summary(exc))
            return LookupBlocked(f"{name}: {WRONG_PASSWORD}: {dc} refused it ({detail})")
        log.error("%s", suspension.message)
        return _Suspended(suspension)

    def note_window(self, account: AccountConfig, window: int | None) -> None:
        """Remember the domain's lockOutObservationWindow (negative 100 ns units), as the lookup account
        read it: a later suspension lasts at least that long. Best effort."""
        name = lookup_key(account)
        seconds = abs(window or 0) // 10_000_000
        if not seconds or self._windows_noted.get(name) == seconds:
            return
        try:
            self._prepare()
            with self._engine.begin() as db:
                db.execute(delete(_windows).where(_windows.c.lookup_account == name))
                db.execute(insert(_windows).values(lookup_account=name, seconds=seconds))
        except (SQLAlchemyError, OSError) as exc:
            log.warning("lookup guard: cannot note the observation window: %s", db_error_summary(exc))
            return
        self._windows_noted[name] = seconds

    def active(self) -> list[LookupSuspension]:
        """The suspensions in force. Raises LookupBlocked when the ledger cannot be read."""
        try:
            self._prepare()
            with self._engine.connect() as db:
                rows = db.execute(select(_suspensions).order_by(_suspensions.c.lookup_account)).all()
        except (SQLAlchemyError, OSError) as exc:
            raise LookupBlocked(f"{self.where} is unavailable: {db_error_summary(exc)}") from None
        now = self._clock()
        return [s for s in map(_suspension, rows) if s.until > now]

    def claim_announcements(self) -> list[LookupSuspension]:
        """The suspensions in force not yet announced, each claimed by this caller alone (once in all).
        Raises LookupBlocked when the ledger cannot be read or written."""
        claimed = []
        for suspension in (s for s in self.active() if not s.announced):
            unannounced = (
                (_suspensions.c.lookup_account == suspension.lookup_account)
                & (_suspensions.c.since == suspension.since.isoformat())
                & (_suspensions.c.announced == 0)
            )
            try:
                with self._engine.begin() as db:
                    done = db.execute(update(_suspensions).where(unannounced).values(announced=1)).rowcount
            except SQLAlchemyError as exc:
                raise LookupBlocked(f"{self.where} is unavailable: {db_error_summary(exc)}") from None
            if done == 1:
                claimed.append(suspension)
        return claimed

    def lift(self, account: AccountConfig) -> LookupSuspension | None:
        """End the lookup account's suspension (`guard reset --lookup`); the one lifted, if any.
        Raises LookupBlocked when the ledger cannot be written."""
        name = lookup_key(account)
        current = [s for s in self.active() if s.lookup_account == name]
        try:
            with self._engine.begin() as db:
                _forget(db, name)
        except SQLAlchemyError as exc:
            raise LookupBlocked(f"{self.where} is unavailable: {db_error_summary(exc)}") from None
        return current[0] if current else None


class _Suspended(LookupBlocked):
    def __init__(self, suspension: LookupSuspension) -> None:
        super().__init__(suspension.message, suspension)


def _row(suspension: LookupSuspension) -> dict[str, object]:
    return {
        "lookup_account": suspension.lookup_account,
        "since": suspension.since.isoformat(),
        "until": suspension.until.isoformat(),
        "dc": suspension.dc,
        "detail": suspension.detail,
        "announced": int(suspension.announced),
    }


def _forget(db: DbConnection, name: str) -> None:
    db.execute(delete(_suspensions).where(_suspensions.c.lookup_account == name))
    db.execute(delete(_sources).where(_sources.c.lookup_account == name))


@contextmanager
def lookup_session(
    dc: DomainController, account: AccountConfig, password: SecretStr, lookups: LookupGuard
) -> Iterator[Connection]:
    """A connection to `dc` bound as the account's lookup account: the only way to bind as one.

    Raises LookupBlocked before anything is sent while the lookup account is suspended, and when `dc`
    refuses the bind (the suspension then starts: the caller tries no other DC); NoVerdict when `dc`
    gave no answer."""
    assert account.lookup_username is not None
    lookups.check(account, password)
    with open_session(dc, account, account.lookup_username, password) as conn:
        bound, code, diagnostic = send_bind(conn)
        if not bound:
            raise lookups.refused(account, password, dc.url, decode_bind_failure(code, diagnostic).message)
        yield conn
