"""The audit trail as the Slack face sees it: an injected object with one `record` method."""

from __future__ import annotations

import logging
from typing import Protocol

log = logging.getLogger(__name__)


class AuditSink(Protocol):
    def record(
        self,
        actor: str,
        action: str,
        account: str | None,
        outcome: str,
        reason: str | None = None,
        detail: str | None = None,
    ) -> None: ...


def slack_actor(user_id: str, user_name: str | None) -> str:
    """How a Slack user appears in the audit trail: `slack:U123 (alice)`."""
    return f"slack:{user_id} ({user_name})" if user_name else f"slack:{user_id}"


class LoggingAudit:
    """Writes audit records to the log; a stand-in where no persistent audit trail is wired."""

    def record(
        self,
        actor: str,
        action: str,
        account: str | None,
        outcome: str,
        reason: str | None = None,
        detail: str | None = None,
    ) -> None:
        log.info(
            "audit: actor=%s action=%s account=%s outcome=%s reason=%s detail=%s",
            actor,
            action,
            account,
            outcome,
            reason,
            detail,
        )
