"""Where a message was put, for whoever updates it later (the monitor's notifier, the approvals)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class MessageRef(BaseModel):
    """Where a notifier put a message (Slack: channel id and message ts), to update or thread on it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    channel: str
    ts: str
