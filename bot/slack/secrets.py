"""Slack credentials: read from the environment only, never from the configuration file.

Every entry point takes them out of the process environment at start (bot.config.secret_env), so that child
processes do not inherit them and Bolt does not pick them up on its own."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import SecretStr

from bot.config import SLACK_APP_TOKEN_ENV as APP_TOKEN_ENV
from bot.config import SLACK_BOT_TOKEN_ENV as BOT_TOKEN_ENV
from bot.config import SLACK_SIGNING_SECRET_ENV as SIGNING_SECRET_ENV
from bot.config import (
    ConfigError,
    SlackConfig,
    read_secret,
)


@dataclass(frozen=True)
class SlackSecrets:
    """The bot token, plus the app-level token (Socket Mode) or the signing secret (HTTP mode)."""

    bot_token: SecretStr
    app_token: SecretStr | None = None
    signing_secret: SecretStr | None = None

    @classmethod
    def from_env(cls, config: SlackConfig) -> SlackSecrets:
        """Read what `config.mode` needs; errors name the variable, never a value."""
        bot_token = read_secret("slack bot token", env=BOT_TOKEN_ENV, file=None)
        _expect_prefix(bot_token, "xoxb-", BOT_TOKEN_ENV)
        if config.mode == "socket":
            app_token = read_secret("slack app-level token", env=APP_TOKEN_ENV, file=None)
            _expect_prefix(app_token, "xapp-", APP_TOKEN_ENV)
            return cls(bot_token=bot_token, app_token=app_token)
        signing_secret = read_secret("slack signing secret", env=SIGNING_SECRET_ENV, file=None)
        return cls(bot_token=bot_token, signing_secret=signing_secret)


def _expect_prefix(secret: SecretStr, prefix: str, env: str) -> None:
    if not secret.get_secret_value().startswith(prefix):
        raise ConfigError([f"{env}: expected a token starting with {prefix}"])
