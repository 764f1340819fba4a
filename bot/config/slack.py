"""`[slack]`: the Slack app (its tokens come from the environment only)."""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from bot.config.base import StrictModel
from bot.config.core import parse_listen

SLACK_CHANNEL_PATTERN = r"^[CG][A-Z0-9]{2,}$"
SLACK_USER_PATTERN = r"^[UW][A-Z0-9]{2,}$"
SLACK_USERGROUP_PATTERN = r"^S[A-Z0-9]{2,}$"


# The Slack credentials' environment variables (names, not secrets; never in the file).
SLACK_BOT_TOKEN_ENV = "SLACK_BOT_TOKEN"  # noqa: S105
SLACK_APP_TOKEN_ENV = "SLACK_APP_TOKEN"  # noqa: S105
SLACK_SIGNING_SECRET_ENV = "SLACK_SIGNING_SECRET"  # noqa: S105
SLACK_SECRET_ENVS = frozenset({SLACK_BOT_TOKEN_ENV, SLACK_APP_TOKEN_ENV, SLACK_SIGNING_SECRET_ENV})


class SlackConfig(StrictModel):
    """The Slack app. Tokens and the signing secret come from the environment only (see bot.slack)."""

    mode: Literal["socket", "http"] = "socket"
    # The channel where password changes are announced.
    channel: Annotated[str, Field(pattern=SLACK_CHANNEL_PATTERN)] | None = None
    api_url: str = "https://slack.com/api/"
    allowed_users: list[Annotated[str, Field(pattern=SLACK_USER_PATTERN)]] = []
    allowed_usergroups: list[Annotated[str, Field(pattern=SLACK_USERGROUP_PATTERN)]] = []
    # If set, sensitive subcommands are accepted only in these channels.
    allowed_channels: list[Annotated[str, Field(pattern=SLACK_CHANNEL_PATTERN)]] = []
    # HTTP mode: loopback by default, behind the TLS proxy Slack needs anyway; the container files pass
    # `atp-bot run --listen 0.0.0.0:3000`.
    listen: str = "127.0.0.1:3000"
    # Threads for slow work (connection tests, saves, sensor checks), apart from Bolt's ack path.
    workers: Annotated[int, Field(ge=1, le=256)] = 8
    # How many expensive requests (`/atp status`, `sensors`, `gmsa`, *Re-check now*) one person may make
    # in a minute: each reaches every sensor over WinRM, or Graph.
    user_rate_per_minute: Annotated[int, Field(strict=True)] = 6  # strict: `true` or "6" are mistakes

    @field_validator("api_url")
    @classmethod
    def _valid_api_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError(f"{value!r}: must be an http(s):// URL")
        return value if value.endswith("/") else value + "/"

    @field_validator("user_rate_per_minute")
    @classmethod
    def _valid_user_rate(cls, value: int) -> int:
        if value < 1:
            raise ValueError(
                f"{value}: must be at least 1 (expensive requests one person may make per minute)"
            )
        return value

    @field_validator("listen")
    @classmethod
    def _valid_listen(cls, value: str) -> str:
        parse_listen(value)
        return value

    @property
    def listen_address(self) -> tuple[str, int]:
        return parse_listen(self.listen)
