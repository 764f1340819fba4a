"""Two-person approval: tested passwords held, encrypted, until an approver decides (issue 16, part 1).

A held request lives in the state database (SQLite in the state directory; with replicas the shared
PostgreSQL), so a restart keeps it and either replica can act on a click. The password is sealed with
AES-GCM under a key kept outside that database (the embedded store's key, or `[approvals] key_file` /
`key_env`), with the request id as associated data, and its ciphertext is deleted at the decision or at
expiry. A decision is a conditional update (`… WHERE state = 'pending'`): whoever's update lands decides,
so a double click, two approvers at once or an Approve after a Deny saves at most once.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import SecretStr
from sqlalchemy import (
    Column,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    and_,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine, RowMapping
from sqlalchemy.exc import SQLAlchemyError

from bot.change.baseline import Baseline
from bot.config import ConfigError, Settings
from bot.config.secret_env import environment_secret
from bot.directory import ConnectionTestResult, Outcome, PasswordExpiry
from bot.infra.dbschema import create_idempotently
from bot.infra.messages import MessageRef
from bot.infra.state_dir import shared_state_engine
from bot.store import StoreError
from bot.store.keys import check_private, decode_key, load_key

log = logging.getLogger(__name__)

APPROVALS_FILE = "approvals.sqlite"
NONCE_BYTES = 12
PURGE_AFTER = timedelta(minutes=10)  # after expiry: an approval's save has long opened its password


class RequestStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class ApprovalError(Exception):
    """The held requests cannot be read or written, or a held password cannot be opened (safe text)."""


_metadata = MetaData()
_requests = Table(
    "approval_requests",
    _metadata,
    Column("id", Text, primary_key=True),
    Column("account_id", Text, nullable=False),
    Column("requester", Text, nullable=False),  # Slack user id
    Column("requester_actor", Text, nullable=False),  # as the audit trail names them
    Column("channel_id", Text, nullable=False),  # where the modal was opened
    Column("view_id", Text, nullable=False),  # the requester's modal ("waiting for approval")
    Column("state", Text, nullable=False),
    Column("created_at", Text, nullable=False),  # ISO 8601 UTC
    Column("expires_at", Text, nullable=False),
    Column("last_save", Integer),  # the audit id of the account's latest save at the test (stale check)
    # JSON: the passed test (dc, message, expiry, warnings, notes) and the baseline an approval checks
    # again (bot.change.baseline); a request held without warnings, notes or baseline loads with none.
    Column("tested", Text, nullable=False),
    Column("messages", Text, nullable=False),  # JSON: the Approve / Deny messages [{channel, ts}]
    Column("decided_by", Text),
    Column("nonce", LargeBinary),
    Column("ciphertext", LargeBinary),  # NULL once decided or expired
)


@dataclass(frozen=True)
class HeldRequest:
    """A request as the faces see it: never the password."""

    id: str
    account_id: str
    requester: str
    requester_actor: str
    channel_id: str
    view_id: str
    state: RequestStatus
    created_at: datetime
    expires_at: datetime
    baseline: Baseline | None  # None: held by an earlier atp-bot that did not record it
    test: ConnectionTestResult
    messages: tuple[MessageRef, ...] = ()
    decided_by: str | None = None


@dataclass(frozen=True)
class Requester:
    """Who asked, and where their modal is."""

    user_id: str
    actor: str
    channel_id: str
    view_id: str


def _test_json(test: ConnectionTestResult, baseline: Baseline) -> str:
    expiry = test.expiry
    return json.dumps(
        {
            "dc": test.dc,
            "message": test.message,
            "never": bool(expiry and expiry.never),
            "at": expiry.at.isoformat() if expiry and expiry.at else None,
            "warnings": list(test.warnings),
            "notes": list(test.notes),
            "baseline": baseline.as_json(),
        }
    )


def _test_from_json(account_id: str, text: str) -> ConnectionTestResult:
    data = json.loads(text)
    at = datetime.fromisoformat(data["at"]) if data["at"] else None
    expiry = PasswordExpiry(never=data["never"], at=at)
    return ConnectionTestResult(
        account_id,
        Outcome.PASSED,
        data["message"],
        dc=data["dc"],
        expiry=expiry,
        warnings=tuple(str(w) for w in data.get("warnings") or ()),
        notes=tuple(str(n) for n in data.get("notes") or ()),
    )


def _baseline_from_json(text: str, last_save: int | None) -> Baseline | None:
    recorded = json.loads(text).get("baseline")
    return Baseline.from_json(recorded, last_save) if recorded else None


def _request(row: RowMapping) -> HeldRequest:
    messages = tuple(MessageRef(**ref) for ref in json.loads(row["messages"]))
    return HeldRequest(
        id=row["id"],
        account_id=row["account_id"],
        requester=row["requester"],
        requester_actor=row["requester_actor"],
        channel_id=row["channel_id"],
        view_id=row["view_id"],
        state=RequestStatus(row["state"]),
        created_at=datetime.fromisoformat(row["created_at"]),
        expires_at=datetime.fromisoformat(row["expires_at"]),
        baseline=_baseline_from_json(row["tested"], row["last_save"]),
        test=_test_from_json(row["account_id"], row["tested"]),
        messages=messages,
        decided_by=row["decided_by"],
    )


def approvals_key(settings: Settings) -> bytes:
    """The key for held passwords: `[approvals] key_env`/`key_file`, else the embedded store's key."""
    config = settings.approvals
    try:
        if config.key_env:
            text = environment_secret(config.key_env)
            if not text:
                raise ConfigError([f"approvals.key_env: environment variable {config.key_env} is not set"])
            return decode_key(text, f"environment variable {config.key_env}").material
        if config.key_file:
            check_private(config.key_file)  # a key others can read may already have leaked
            return decode_key(_read_key_file(config.key_file), f"key file {config.key_file}").material
        return load_key(settings).material
    except StoreError as exc:
        raise ConfigError([f"approvals: {exc.message}"]) from None


def _read_key_file(path: Path) -> str:
    try:
        return path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"approvals.key_file: cannot read {path}: {exc}"]) from None


def new_request_id() -> str:
    """A request's id: unguessable, since it travels in button values."""
    return secrets.token_urlsafe(16)


def open_approvals(settings: Settings) -> HeldRequests | None:
    """The held requests when some account needs approval, else None. Raises ConfigError/ApprovalError."""
    if not any(settings.approval_required(account.id) for account in settings.accounts):
        return None
    return HeldRequests.for_settings(settings)


def now_utc() -> datetime:
    return datetime.now(UTC)


class HeldRequests:
    """The held requests of one configuration (every replica's view of the same rows)."""

    def __init__(self, engine: Engine, key: bytes, expires: timedelta) -> None:
        self._engine = engine
        self._aead = AESGCM(key)
        self._expires = expires
        create_idempotently(lambda: _metadata.create_all(engine))

    @classmethod
    def for_settings(cls, settings: Settings) -> HeldRequests:
        """Raises ConfigError (no key) or ApprovalError (the database)."""
        key = approvals_key(settings)
        try:
            return cls(
                shared_state_engine(settings, APPROVALS_FILE),
                key,
                timedelta(minutes=settings.approvals.expires_minutes),
            )
        except (SQLAlchemyError, OSError) as exc:
            raise ApprovalError(f"the approval requests cannot be opened: {type(exc).__name__}") from None

    def hold(
        self,
        request_id: str,
        account_id: str,
        password: SecretStr,
        requester: Requester,
        test: ConnectionTestResult,
        baseline: Baseline,
    ) -> HeldRequest:
        """Keep a tested password, sealed, until a decision or expiry."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, password.get_secret_value().encode(), request_id.encode())
        created = now_utc()
        request = HeldRequest(
            id=request_id,
            account_id=account_id,
            requester=requester.user_id,
            requester_actor=requester.actor,
            channel_id=requester.channel_id,
            view_id=requester.view_id,
            state=RequestStatus.PENDING,
            created_at=created,
            expires_at=created + self._expires,
            baseline=baseline,
            test=test,
        )
        row = {
            "id": request.id,
            "account_id": account_id,
            "requester": requester.user_id,
            "requester_actor": requester.actor,
            "channel_id": requester.channel_id,
            "view_id": requester.view_id,
            "state": RequestStatus.PENDING.value,
            "created_at": created.isoformat(),
            "expires_at": request.expires_at.isoformat(),
            "last_save": baseline.last_save,
            "tested": _test_json(test, baseline),
            "messages": "[]",
            "nonce": nonce,
            "ciphertext": sealed,
        }
        with self._transaction() as db:
            db.execute(insert(_requests).values(**row))
        return request

    def get(self, request_id: str) -> HeldRequest | None:
        with self._transaction() as db:
            row = db.execute(select(_requests).where(_requests.c.id == request_id)).mappings().first()
        return _request(row) if row is not None else None

    def set_messages(self, request_id: str, messages: list[MessageRef]) -> None:
        """Where the Approve / Deny message(s) went, so that any replica can update them."""
        text = json.dumps([m.model_dump() for m in messages])
        with self._transaction() as db:
            db.execute(update(_requests).where(_requests.c.id == request_id).values(messages=text))

    def decide(self, request_id: str, state: RequestStatus, actor: str) -> HeldRequest | None:
        """Move a pending, unexpired request to `state`, at most once whoever asks: the request if this
        call decided it, else None (decided already, expired, or unknown). The sealed password is kept
        for an approval (`open_approved` reads then deletes it) and deleted for any other decision."""
        pending = and_(_requests.c.id == request_id, _requests.c.state == RequestStatus.PENDING.value)
        if state is not RequestStatus.EXPIRED:
            pending = and_(pending, _requests.c.expires_at > now_utc().isoformat())
        values: dict[str, object] = {"state": state.value, "decided_by": actor}
        if state is not RequestStatus.APPROVED:
            values |= {"nonce": None, "ciphertext": None}
        with self._transaction() as db:
            if db.execute(update(_requests).where(pending).values(**values)).rowcount != 1:
                return None
            row = db.execute(select(_requests).where(_requests.c.id == request_id)).mappings().one()
        return _request(row)

    def open_approved(self, request: HeldRequest) -> SecretStr:
        """The approved request's password, its ciphertext deleted from the database at once."""
        where = and_(_requests.c.id == request.id, _requests.c.state == RequestStatus.APPROVED.value)
        with self._transaction() as db:
            row = db.execute(select(_requests.c.nonce, _requests.c.ciphertext).where(where)).first()
            db.execute(update(_requests).where(where).values(nonce=None, ciphertext=None))
        if row is None or row.ciphertext is None:
            raise ApprovalError("the held password is gone (already used)")
        try:
            plain = self._aead.decrypt(row.nonce, row.ciphertext, request.id.encode())
        except InvalidTag:
            raise ApprovalError("the held password cannot be opened with this key") from None
        return SecretStr(plain.decode())

    def sealed(self) -> int:
        """How many requests still hold a sealed password (pending, or approved and not yet opened)."""
        query = select(func.count()).select_from(_requests).where(_requests.c.ciphertext.is_not(None))
        with self._transaction() as db:
            return int(db.execute(query).scalar_one())

    def due(self) -> list[HeldRequest]:
        """Pending requests whose time is up (to expire)."""
        query = select(_requests).where(
            _requests.c.state == RequestStatus.PENDING.value, _requests.c.expires_at <= now_utc().isoformat()
        )
        with self._transaction() as db:
            return [_request(row) for row in db.execute(query).mappings()]

    def purge_decided(self) -> None:
        """Drop decided requests once no save can still be reading them (an approval opens its password
        at once; a process that died in between leaves a ciphertext, dropped here)."""
        cutoff = (now_utc() - PURGE_AFTER).isoformat()
        with self._transaction() as db:
            db.execute(
                delete(_requests).where(
                    _requests.c.state != RequestStatus.PENDING.value, _requests.c.expires_at < cutoff
                )
            )

    def close(self) -> None:
        self._engine.dispose()

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        """One transaction; a database error becomes ApprovalError (one safe line)."""
        try:
            with self._engine.begin() as db:
                yield db
        except SQLAlchemyError as exc:
            log.error("approval requests: database error: %s", type(exc).__name__)
            raise ApprovalError(
                f"the approval requests cannot be read or written ({type(exc).__name__})"
            ) from None
