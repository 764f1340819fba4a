"""`[logging]` and `[observability]`: how the running service reports on itself."""

from __future__ import annotations

from typing import Literal

from pydantic import field_validator

from bot.config.base import StrictModel
from bot.config.core import parse_listen


class LoggingConfig(StrictModel):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"


class ObservabilityConfig(StrictModel):
    """`[observability]`: `/healthz` and `/metrics` of `atp-bot run` on a local port (off when unset)."""

    listen: str | None = None  # e.g. "127.0.0.1:9464"

    @field_validator("listen")
    @classmethod
    def _valid_listen(cls, value: str | None) -> str | None:
        if value is not None:
            parse_listen(value)
        return value
