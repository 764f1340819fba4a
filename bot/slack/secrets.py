"""Slack credentials: read from the environment only, never from the configuration file."""

from __future__ import annotations

import os
from dataclasses import dataclass

from pydantic import SecretStr

from bot.config import (
    APP_TOKEN_ENV,
    BOT_TOKEN_ENV,
    SIGNING_SECRET_ENV,
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


def remove_from_environment() -> None:
    """Drop the Slack secrets from this process's environment once read, so that child processes (a
    `command` store backend, for one) do not inherit them, and Bolt does not pick them up on its own."""
    for name in (BOT_TOKEN_ENV, APP_TOKEN_ENV, SIGNING_SECRET_ENV):
        os.environ.pop(name, None)
