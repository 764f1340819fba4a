"""What `/atp password` leaves in the change journal's `origin`: who to tell if a crash cuts it short."""

from __future__ import annotations

from collections.abc import Mapping

USER = "slack_user"
CHANNEL = "slack_channel"


def slack_origin(user_id: str, channel_id: str) -> dict[str, str]:
    return {USER: user_id, CHANNEL: channel_id}


def origin_user(origin: Mapping[str, str]) -> str | None:
    return origin.get(USER)


def origin_channel(origin: Mapping[str, str]) -> str | None:
    return origin.get(CHANNEL)
