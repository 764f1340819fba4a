"""The audit trail as the Slack face sees it: an injected object with one `record` method."""

from __future__ import annotations

from typing import Protocol


class AuditSink(Protocol):
    def record(
        self,
        actor: str,
        action: str,
        account: str | None,
        outcome: str,
        reason: str | None = None,
        detail: str | None = None,
    ) -> object: ...


def slack_actor(user_id: str, user_name: str | None) -> str:
    """How a Slack user appears in the audit trail: `slack:U123 (alice)`."""
    return f"slack:{user_id} ({user_name})" if user_name else f"slack:{user_id}"
