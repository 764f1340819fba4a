"""What the command line needs before any settings model: the errors, where the file is, reading it, and
the listen parser. Pydantic-free on purpose: `atp-bot --help` and `atp-bot health` (a probe that runs
every few seconds) import only this module of the configuration, not the models of every section.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

CONFIG_ENV = "ATP_BOT_CONFIG"
DEFAULT_CONFIG_NAME = "atp-bot.toml"


class ConfigError(Exception):
    """The configuration cannot be used; `problems` holds one precise line per problem."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


class UsageError(ConfigError):
    """What was typed cannot be used (an unknown account id, passwords that differ): exit 2, "usage error"."""


def resolve_config_path(cli_value: str | None) -> Path:
    """`--config`, else `$ATP_BOT_CONFIG`, else `./atp-bot.toml`."""
    return Path(cli_value or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_NAME)


def read_config_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{path}: no such configuration file (use --config or ${CONFIG_ENV})"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: not UTF-8 text"]) from None


def parse_listen(value: str) -> tuple[str, int]:
    """`host:port` (IPv6 as `[::1]:3000`; port 0 picks a free port) → (host, port)."""
    host, sep, port = value.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"{value!r}: expected host:port, e.g. 0.0.0.0:3000")
    return host, int(port)
