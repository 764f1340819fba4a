"""How the Slack face names its actors in the audit trail."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# The Bolt context key where the authorization middleware leaves the user group that granted access.
ACCESS_VIA = "atp_access_via"


def slack_actor(user_id: str, user_name: str | None, via: str | None = None) -> str:
    """How a Slack user appears in the audit trail: `slack:U123 (alice)`, and `… via @secops` when a user
    group (not `allowed_users`) granted the access."""
    actor = f"slack:{user_id} ({user_name})" if user_name else f"slack:{user_id}"
    return f"{actor} via {via}" if via else actor


def interaction_actor(body: Mapping[str, Any], context: Mapping[str, Any]) -> str:
    """The actor of a button click or modal submission: who (from Slack's payload) and through which user
    group (from the authorization middleware's `context`)."""
    user = body.get("user") or {}
    return slack_actor(user.get("id", ""), user.get("username") or user.get("name"), context.get(ACCESS_VIA))
