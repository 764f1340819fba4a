"""`[audit]`: where the audit trail lives, its key, and the daily head announcement."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator, model_validator

from bot.config.base import DAILY_TIME, Argv, SecretSource, StrictModel, database_url


class AuditConfig(StrictModel):
    # SQLAlchemy URL without a password (e.g. postgresql+psycopg://atp@db/atp); default: SQLite in the
    # state directory. The database password, if any, comes from password_env or password_file.
    url: str | None = None
    password_env: str | None = None
    password_file: Path | None = None
    # The HMAC key of the chain, kept outside the audit database: from this environment variable when it
    # is set, else from key_file (default: <state_dir>/audit.key, made by `atp-bot audit init`).
    key_env: str | None = "ATP_BOT_AUDIT_KEY"
    key_file: Path | None = None
    # Post the verified head of the chain (row and hash) to [slack] channel once a day, "HH:MM" UTC.
    announce_head: bool = False
    announce_head_at: str = "08:00"
    # A program (argv, no shell) that gets every new head as `ID:HASH` lines on standard input, to keep
    # them where the bot cannot rewrite them (bot.audit.anchor); stopped after anchor_timeout seconds.
    anchor_command: Argv | None = None
    anchor_timeout: Annotated[float, Field(gt=0, le=600)] = 30.0

    @field_validator("url")
    @classmethod
    def _no_password_in_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        url = database_url(value, "postgresql+psycopg://user@host/db")
        if url.password:
            raise ValueError("must not contain a password: use password_env or password_file")
        return value

    @field_validator("announce_head_at")
    @classmethod
    def _valid_announce_time(cls, value: str) -> str:
        if not re.match(DAILY_TIME, value):
            raise ValueError(f'{value!r}: use a UTC time of day, e.g. "08:00"')
        return value

    @model_validator(mode="after")
    def _secret_source(self) -> AuditConfig:
        self.password_source.check()
        return self

    @property
    def announce_daily_at(self) -> tuple[int, int]:
        """(hour, minute) UTC of the daily head announcement."""
        hour, minute = self.announce_head_at.split(":")
        return int(hour), int(minute)

    @property
    def password_source(self) -> SecretSource:
        return SecretSource("audit", "password", self.password_env, self.password_file)

    def password(self) -> SecretStr | None:
        return self.password_source.read_if_configured()
