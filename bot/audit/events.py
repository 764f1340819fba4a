"""What the audit trail records and returns: actions, outcomes, rows, anchors, verifications, and the
`AuditSink` protocol that the change path and the faces write to."""

from __future__ import annotations

import getpass
import logging
import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

log = logging.getLogger(__name__)


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
    LISTING = "listing"  # a list of sensors shown (`/atp sensors`): what it found is in the detail
    STORE_INIT = "store-init"
    STORE_ROTATE_KEY = "store-rotate-key"
    LOCKOUT_GUARD = "lockout-guard"
    INTERRUPTED = "interrupted"  # a change cut short by a crash, resolved at the next start
    AUDIT_INIT = "audit-init"
    AUDIT_REKEY = "audit-rekey"
    ANNOUNCE = "announce"  # a CLI change told in the Slack channel (or why it could not be)
    # Two-person approval (bot.change.approvals): each with its actor (requester, approver, or atp-bot).
    APPROVAL_REQUEST = "approval-request"
    APPROVE = "approve"
    DENY = "deny"
    APPROVAL_CANCEL = "approval-cancel"
    APPROVAL_EXPIRE = "approval-expire"
    BREAK_GLASS = "break-glass"  # a CLI change saved without approval (--break-glass --reason)
    PORTAL_UPDATED = "portal-updated"  # the saved password is in the Defender portal (who, or evidence)


class AuditOutcome(StrEnum):
    OK = "ok"
    FAILED = "failed"
    REFUSED = "refused"
    ERROR = "error"
    DENIED = "denied"  # an authorization refusal (a Slack user or channel not allowed)


@dataclass(frozen=True, kw_only=True)
class AuditEvent:
    """One event to append to the trail: who did what to which account, how it ended and why. Built with
    named fields, so that no caller can swap the reason and the detail."""

    actor: str  # `cli:<login>`, `slack:<user id> (<name>)`, or atp-bot itself
    action: str  # an AuditAction; in a DENIED row, the name of the refused subcommand or interaction
    account: str | None  # the account's id; None: not about one account (a store or trail operation)
    outcome: AuditOutcome
    reason: str | None = None  # a short machine-readable why (an AD reason, a store error's reason...)
    detail: str | None = None  # one line for people, never a secret


class AuditSink(Protocol):
    """Anything that records audit events (the trail itself, or a test's recorder)."""

    def record(self, event: AuditEvent) -> object: ...


def record_or_log(audit: AuditSink, event: AuditEvent) -> None:
    """Audit something that has already happened (a save, a service start, an alert): an unavailable
    trail is logged loudly but never raised, because what happened cannot be undone."""
    try:
        audit.record(event)
    except AuditError as exc:
        log.error(
            "audit trail unavailable; not recorded: %s %s %s %s: %s",
            event.actor,
            event.action,
            event.account,
            event.outcome,
            exc,
        )


class AuditError(Exception):
    """The audit trail cannot be written or read; the message names the database, never a secret."""


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
