"""What every section shares: the strict base model, reading a secret, small value parsers (the errors and
the listen parser, which need no model, are in bot.config.core).

Secrets are never in the file: every secret is named by an environment variable (`*_env`) or a file
(`*_file`) and read only when it is needed, into a `SecretStr`.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr

from bot.config.core import ConfigError
from bot.config.secret_env import environment_secret

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

DAILY_TIME = r"^(?:[01][0-9]|2[0-3]):[0-5][0-9]$"


def _absolute_program(value: list[str]) -> list[str]:
    if not value[0] or not Path(value[0]).is_absolute():
        raise ValueError("argv[0] must be the absolute path of the program (no shell, no PATH lookup)")
    return value


# An operator's program and its arguments (bot.infra.operator_command runs it): a list of strings, no shell.
Argv = Annotated[list[str], Field(min_length=1), AfterValidator(_absolute_program)]


class StrictModel(BaseModel):
    """Strict base: unknown keys are errors, so a typo never silently falls back to a default."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def read_secret(what: str, *, env: str | None, file: Path | None) -> SecretStr:
    """Read a secret from an environment variable or a file; errors name the source, never a value."""
    if env:
        value = environment_secret(env)
        if not value:
            raise ConfigError([f"{what}: environment variable {env} is not set"])
        return SecretStr(value)
    if file:
        try:
            value = file.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise ConfigError([f"{what}: cannot read {file}: {exc.strerror}"]) from None
        if not value:
            raise ConfigError([f"{what}: {file} is empty"])
        return SecretStr(value)
    raise ConfigError([f"{what}: no password_env or password_file is configured"])


def read_private_file(what: str, path: Path) -> SecretStr:
    """A key file's text, refused (never read) when group or others may access it, like the store's and the
    audit trail's keys; errors name the file, never what it holds."""
    try:
        mode = path.stat().st_mode
        if not stat.S_ISREG(mode):
            raise ConfigError([f"{what}: {path} is not a regular file"])
        if mode & 0o077:
            raise ConfigError(
                [
                    f"{what}: {path} is accessible by group or others (mode {stat.S_IMODE(mode):04o}); "
                    f"fix it with: chmod 600 {path}"
                ]
            )
        value = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not text"
        raise ConfigError([f"{what}: cannot read {path}: {reason}"]) from None
    if not value.strip():
        raise ConfigError([f"{what}: {path} is empty"])
    return SecretStr(value)


@dataclass(frozen=True)
class SecretSource:
    """One `<key>_env`/`<key>_file` pair of settings: where a secret comes from (never the file itself).

    The models keep both keys (they are the file's interface) and hand the pair to this helper, which
    owns the rules: at most one of the two is set, and the secret is read only when it is needed.
    """

    what: str  # how errors name the secret, e.g. "scheduler.jobstore_password"
    key: str  # the pair's key without its suffix, e.g. "jobstore_password"
    env: str | None
    file: Path | None

    @property
    def configured(self) -> bool:
        return bool(self.env or self.file)

    def check(self) -> None:
        """For a model validator: both keys set is an error."""
        if self.env and self.file:
            raise ValueError(f"set {self.key}_env or {self.key}_file, not both")

    def read(self) -> SecretStr:
        return read_secret(self.what, env=self.env, file=self.file)

    def read_if_configured(self) -> SecretStr | None:
        return self.read() if self.configured else None


def database_url(value: str, example: str) -> URL:
    """A SQLAlchemy URL; ValueError naming `example` if it is not one. SQLAlchemy is imported only for a
    configuration that names a database (a sensor check worker, `--help` and most checks never do)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(value)
    except ArgumentError:
        raise ValueError(f"not a valid SQLAlchemy URL (e.g. {example})") from None
