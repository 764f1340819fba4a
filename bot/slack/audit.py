"""How the Slack face names its actors in the audit trail."""

from __future__ import annotations


def slack_actor(user_id: str, user_name: str | None) -> str:
    """How a Slack user appears in the audit trail: `slack:U123 (alice)`."""
    return f"slack:{user_id} ({user_name})" if user_name else f"slack:{user_id}"
