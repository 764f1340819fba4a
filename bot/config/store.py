"""`[store]`: where the tested credential is saved (embedded, an ATA Center, or an operator's command)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from bot.config.accounts import AccountName
from bot.config.base import Argv, SecretSource, StrictModel

StoreBackend = Literal["embedded", "ata-center", "command"]


class AtaCenterConfig(StrictModel):
    """An on-premises ATA Center whose console configuration holds the directory services credential."""

    url: str
    # The Windows (NTLM) identity atp-bot signs in to the ATA Center with, as DOMAIN\\user or user@domain.
    username: str
    password_env: str | None = None
    password_file: Path | None = None
    ca_file: Path | None = None
    tls_verify: bool = True
    timeout: Annotated[float, Field(gt=0, le=600)] = 30.0

    @field_validator("url")
    @classmethod
    def _https_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError(f"{value!r}: must be https://<center>[:port]")
        if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
            raise ValueError(f"{value!r}: only scheme, host and port are allowed")
        return value.rstrip("/")

    @field_validator("username")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        AccountName.parse(value)
        return value

    @model_validator(mode="after")
    def _secret_source(self) -> AtaCenterConfig:
        self.password_source.check()
        if not self.password_source.configured:
            raise ValueError("set password_env or password_file for the ATA Center sign-in")
        return self

    @property
    def password_source(self) -> SecretSource:
        return SecretSource("store.ata_center", "password", self.password_env, self.password_file)

    def password(self) -> SecretStr:
        return self.password_source.read()


class CommandStoreConfig(StrictModel):
    """An operator-provided executable that saves the credential (it gets the secret on standard input)."""

    argv: Argv
    timeout: Annotated[float, Field(gt=0, le=3600)] = 60.0
    # Environment variables passed on to the program besides PATH, LANG, HOME and ATP_BOT_*; never a secret.
    pass_env: list[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]] = []


class StoreConfig(StrictModel):
    backend: StoreBackend = "embedded"
    # Embedded store: the key comes from this environment variable when it is set, else from key_file.
    key_env: str | None = "ATP_BOT_STORE_KEY"
    key_file: Path | None = None  # default: <state_dir>/store.key
    path: Path | None = None  # default: <state_dir>/credentials.sqlite
    ata_center: AtaCenterConfig | None = None
    command: CommandStoreConfig | None = None

    @model_validator(mode="after")
    def _backend_configured(self) -> StoreConfig:
        if self.backend == "ata-center" and self.ata_center is None:
            raise ValueError('backend "ata-center" needs a [store.ata_center] table')
        if self.backend == "command" and self.command is None:
            raise ValueError('backend "command" needs a [store.command] table')
        return self
