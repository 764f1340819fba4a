"""The configuration file: one TOML file validated into typed models.

Secrets are never in the file: every secret is named by an environment variable (`*_env`) or a file
(`*_file`) and read only when it is needed, into a `SecretStr`.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from bot.config_messages import Location, TomlLines, format_location, parse_location, plain_message
from bot.secret_env import environment_secret

CONFIG_ENV = "ATP_BOT_CONFIG"
DEFAULT_CONFIG_NAME = "atp-bot.toml"

ACCOUNT_ID_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,62}$"


class ConfigError(Exception):
    """The configuration cannot be used; `problems` holds one precise line per problem."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


class UsageError(ConfigError):
    """What was typed cannot be used (an unknown account id, passwords that differ): exit 2, "usage error"."""


class _Model(BaseModel):
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


@dataclass(frozen=True)
class AccountName:
    """A directory account name as an operator writes it: `user@domain` (UPN) or `DOMAIN\\user`."""

    raw: str
    user: str
    domain: str
    style: Literal["upn", "down-level"]

    @classmethod
    def parse(cls, raw: str) -> AccountName:
        if raw != raw.strip() or not raw:
            raise ValueError("must not be empty or have leading/trailing spaces")
        if "\\" in raw:
            domain, _, user = raw.partition("\\")
            style: Literal["upn", "down-level"] = "down-level"
        elif "@" in raw:
            user, _, domain = raw.rpartition("@")
            style = "upn"
        else:
            raise ValueError("must be a UPN (user@domain) or a down-level name (DOMAIN\\user)")
        if not user or not domain or "\\" in user or "@" in domain or any(c.isspace() for c in raw):
            raise ValueError("must be a UPN (user@domain) or a down-level name (DOMAIN\\user)")
        return cls(raw=raw, user=user, domain=domain, style=style)


@dataclass(frozen=True)
class DomainController:
    """One LDAP endpoint: `ldaps://host[:636]`, or `ldap://host[:389]` upgraded with StartTLS."""

    url: str
    host: str
    port: int
    use_ssl: bool

    @classmethod
    def parse(cls, url: str) -> DomainController:
        parts = urlsplit(url)
        if parts.scheme not in ("ldaps", "ldap"):
            raise ValueError(f"{url!r}: scheme must be ldaps:// or ldap:// (with StartTLS)")
        if not parts.hostname:
            raise ValueError(f"{url!r}: no host name")
        if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
            raise ValueError(f"{url!r}: only scheme, host and port are allowed")
        try:
            port = parts.port
        except ValueError:
            raise ValueError(f"{url!r}: invalid port") from None
        use_ssl = parts.scheme == "ldaps"
        return cls(url=url, host=parts.hostname, port=port or (636 if use_ssl else 389), use_ssl=use_ssl)


class AccountConfig(_Model):
    """One directory service account (one domain or forest) that sensors use to read AD."""

    id: Annotated[str, Field(pattern=ACCOUNT_ID_PATTERN)]
    username: str
    domain_controllers: Annotated[list[str], Field(min_length=1)]
    ca_file: Path | None = None
    tls_verify: bool = True
    connect_timeout: Annotated[float, Field(gt=0, le=120)] = 5.0
    receive_timeout: Annotated[int, Field(gt=0, le=300)] = 15  # whole seconds (ldap3 needs an int)
    base_dn: str | None = None
    # Optional read-only account used to read badPwdCount/lockoutThreshold before a test.
    lookup_username: str | None = None
    lookup_password_env: str | None = None
    lookup_password_file: Path | None = None
    # Two-person approval for this account: overrides `[approvals] required` (None: follow it).
    approval: bool | None = None

    @field_validator("username", "lookup_username")
    @classmethod
    def _valid_name(cls, value: str | None) -> str | None:
        if value is not None:
            AccountName.parse(value)
        return value

    @field_validator("domain_controllers")
    @classmethod
    def _valid_dcs(cls, value: list[str]) -> list[str]:
        for url in value:
            DomainController.parse(url)
        if len(set(value)) != len(value):
            raise ValueError("a domain controller is listed twice")
        return value

    @model_validator(mode="after")
    def _lookup_complete(self) -> AccountConfig:
        has_secret = bool(self.lookup_password_env or self.lookup_password_file)
        if bool(self.lookup_username) != has_secret:
            raise ValueError("lookup_username and lookup_password_env/lookup_password_file go together")
        if self.lookup_password_env and self.lookup_password_file:
            raise ValueError("set lookup_password_env or lookup_password_file, not both")
        return self

    def lookup_password(self) -> SecretStr:
        return read_secret(
            f"account {self.id}: lookup_password",
            env=self.lookup_password_env,
            file=self.lookup_password_file,
        )

    @property
    def name(self) -> AccountName:
        return AccountName.parse(self.username)

    @property
    def dcs(self) -> list[DomainController]:
        return [DomainController.parse(url) for url in self.domain_controllers]


class LockoutGuardConfig(_Model):
    """How many rejected tests per account atp-bot allows within a window before it refuses more."""

    max_rejections: Annotated[int, Field(ge=1, le=100)] = 2
    window_minutes: Annotated[int, Field(ge=1, le=24 * 60)] = 30


class LoggingConfig(_Model):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"


SensorKind = Literal["mdi", "ata"]
WinRMTransport = Literal["ntlm", "kerberos", "basic", "certificate", "credssp"]

_ENDPOINT_HINT = "use https://host:5986/wsman (or http://host:5985/wsman)"


def parse_winrm_endpoint(value: str) -> str:
    """A sensor address: a bare host name (HTTPS on 5986) or a full `http(s)://host[:port]/wsman` URL."""
    if "://" not in value:
        if not value or any(c in value for c in "/:@ \\"):
            raise ValueError(f"{value!r}: not a host name; {_ENDPOINT_HINT}")
        return f"https://{value}:5986/wsman"
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"{value!r}: {_ENDPOINT_HINT}")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ValueError(f"{value!r}: only scheme, host, port and path are allowed")
    try:
        port = parts.port or (5986 if parts.scheme == "https" else 5985)
    except ValueError:
        raise ValueError(f"{value!r}: invalid port") from None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}:{port}{parts.path or '/wsman'}"


class _WinRMSettings(_Model):
    """Connection settings that `[winrm]` sets for every sensor and a `[[sensors]]` entry may override."""

    username: str | None = None
    password_env: str | None = None
    password_file: Path | None = None
    transport: WinRMTransport | None = None
    # CA bundle (PEM) that signs the sensors' WinRM HTTPS certificates; default: the system trust store.
    ca_file: Path | None = None
    # false turns certificate validation off (a warning is logged on every check).
    cert_validation: bool | None = None
    # For transport = "certificate": client certificate and key (PEM files).
    cert_pem: Path | None = None
    cert_key_pem: Path | None = None

    @model_validator(mode="after")
    def _one_secret_source(self) -> _WinRMSettings:
        if self.password_env and self.password_file:
            raise ValueError("set password_env or password_file, not both")
        if bool(self.cert_pem) != bool(self.cert_key_pem):
            raise ValueError("cert_pem and cert_key_pem go together")
        return self


class WinRMConfig(_WinRMSettings):
    """`[winrm]`: defaults for every sensor."""

    transport: WinRMTransport | None = "ntlm"
    cert_validation: bool | None = True
    # WS-Management operation timeout; the HTTP read timeout is derived from it (pywinrm needs read > op).
    operation_timeout: Annotated[int, Field(ge=1, le=600)] = 20


class SensorConfig(_WinRMSettings):
    """`[[sensors]]`: one sensor server reached over WinRM. Unset values come from `[winrm]` and `kind`."""

    name: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
    endpoint: str
    kind: SensorKind = "mdi"
    account: str | None = None
    # Windows service names to check; default per kind (see docs/sensors.md).
    services: (
        Annotated[list[Annotated[str, Field(pattern=r"^[A-Za-z0-9_.$ -]{1,256}$")]], Field(min_length=1)]
        | None
    ) = None
    # Folder of the error log; one `*` may stand for the versioned folder (the newest log wins).
    log_dir: Annotated[str, Field(min_length=3, max_length=260)] | None = None
    error_log: Annotated[str, Field(pattern=r"^[^\\/:*?\"<>|]{1,255}$")] | None = None
    credential_error_patterns: (
        Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)] | None
    ) = None

    @field_validator("endpoint")
    @classmethod
    def _valid_endpoint(cls, value: str) -> str:
        return parse_winrm_endpoint(value)

    @field_validator("log_dir")
    @classmethod
    def _valid_log_dir(cls, value: str | None) -> str | None:
        if value is not None and value.count("*") > 1:
            raise ValueError("at most one `*` (the versioned folder) is allowed")
        return value

    def effective_transport(self, winrm: WinRMConfig) -> WinRMTransport:
        return self.transport or winrm.transport or "ntlm"

    def effective_cert_validation(self, winrm: WinRMConfig) -> bool:
        return (
            self.cert_validation if self.cert_validation is not None else winrm.cert_validation is not False
        )

    @property
    def over_http(self) -> bool:
        return self.endpoint.startswith("http://")


# WinRM transports that must not run over plain http://, and why.
_NEEDS_HTTPS: dict[WinRMTransport, str] = {
    "basic": "sends the WinRM password in clear text before the host can refuse it",
    "certificate": "presents the client certificate in the TLS handshake, which http:// does not have",
}


class SensorChecksConfig(_Model):
    """`[sensor_checks]`: how `atp-bot check` and the follow-up checks fan out."""

    pool_size: Annotated[int, Field(ge=1, le=1024)] = 32
    # Wall-clock limit for one sensor (connect, authenticate, run, read output).
    host_timeout: Annotated[float, Field(gt=0, le=3600)] = 60.0
    credential_error_patterns: Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)] = [
        "The supplied credential is invalid."
    ]
    # Without `since` or a saved position, look this far back in the error log.
    default_window_minutes: Annotated[int, Field(ge=1, le=7 * 24 * 60)] = 60
    # Upper bound of log bytes one check reads on a sensor (the sensor reads, only results travel).
    max_scan_bytes: Annotated[int, Field(ge=4096, le=1 << 34)] = 64 * 1024 * 1024


StoreBackend = Literal["embedded", "ata-center", "command"]


def _one_secret_source(what: str, env: str | None, file: Path | None) -> None:
    if env and file:
        raise ValueError(f"set {what}_env or {what}_file, not both")


class AtaCenterConfig(_Model):
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
        _one_secret_source("password", self.password_env, self.password_file)
        if not (self.password_env or self.password_file):
            raise ValueError("set password_env or password_file for the ATA Center sign-in")
        return self

    def password(self) -> SecretStr:
        return read_secret("store.ata_center", env=self.password_env, file=self.password_file)


class CommandStoreConfig(_Model):
    """An operator-provided executable that saves the credential (it gets the secret on standard input)."""

    argv: Annotated[list[str], Field(min_length=1)]
    timeout: Annotated[float, Field(gt=0, le=3600)] = 60.0
    # Environment variables passed on to the program besides PATH, LANG, HOME and ATP_BOT_*; never a secret.
    pass_env: list[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]] = []

    @field_validator("argv")
    @classmethod
    def _absolute_program(cls, value: list[str]) -> list[str]:
        if not value[0] or not Path(value[0]).is_absolute():
            raise ValueError("argv[0] must be the absolute path of the program (no shell, no PATH lookup)")
        return value


class StoreConfig(_Model):
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


class AuditConfig(_Model):
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

    @field_validator("url")
    @classmethod
    def _no_password_in_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            url = make_url(value)
        except ArgumentError:
            raise ValueError("not a valid SQLAlchemy URL (e.g. postgresql+psycopg://user@host/db)") from None
        if url.password:
            raise ValueError("must not contain a password: use password_env or password_file")
        return value

    @field_validator("announce_head_at")
    @classmethod
    def _valid_announce_time(cls, value: str) -> str:
        if not re.match(_DAILY_TIME, value):
            raise ValueError(f'{value!r}: use a UTC time of day, e.g. "08:00"')
        return value

    @model_validator(mode="after")
    def _secret_source(self) -> AuditConfig:
        _one_secret_source("password", self.password_env, self.password_file)
        return self

    @property
    def announce_daily_at(self) -> tuple[int, int]:
        """(hour, minute) UTC of the daily head announcement."""
        hour, minute = self.announce_head_at.split(":")
        return int(hour), int(minute)

    def password(self) -> SecretStr | None:
        if not (self.password_env or self.password_file):
            return None
        return read_secret("audit", env=self.password_env, file=self.password_file)


SLACK_CHANNEL_PATTERN = r"^[CG][A-Z0-9]{2,}$"
SLACK_USER_PATTERN = r"^[UW][A-Z0-9]{2,}$"
SLACK_USERGROUP_PATTERN = r"^S[A-Z0-9]{2,}$"


def parse_listen(value: str) -> tuple[str, int]:
    """`host:port` (IPv6 as `[::1]:3000`; port 0 picks a free port) → (host, port)."""
    host, sep, port = value.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"{value!r}: expected host:port, e.g. 0.0.0.0:3000")
    return host, int(port)


# Where the Slack credentials come from (names of environment variables, not secrets; see bot.slack.secrets).
SLACK_BOT_TOKEN_ENV = "SLACK_BOT_TOKEN"  # noqa: S105
SLACK_APP_TOKEN_ENV = "SLACK_APP_TOKEN"  # noqa: S105
SLACK_SIGNING_SECRET_ENV = "SLACK_SIGNING_SECRET"  # noqa: S105
SLACK_SECRET_ENVS = frozenset({SLACK_BOT_TOKEN_ENV, SLACK_APP_TOKEN_ENV, SLACK_SIGNING_SECRET_ENV})


class SlackConfig(_Model):
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

    @field_validator("api_url")
    @classmethod
    def _valid_api_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError(f"{value!r}: must be an http(s):// URL")
        return value if value.endswith("/") else value + "/"

    @field_validator("listen")
    @classmethod
    def _valid_listen(cls, value: str) -> str:
        parse_listen(value)
        return value

    @property
    def listen_address(self) -> tuple[str, int]:
        return parse_listen(self.listen)


class ApprovalsConfig(_Model):
    """Two-person approval: a tested password waits for an approver's click before it is saved."""

    required: bool = False  # every account, unless its `approval` says otherwise
    approvers: list[Annotated[str, Field(pattern=SLACK_USER_PATTERN)]] = []
    approver_usergroups: list[Annotated[str, Field(pattern=SLACK_USERGROUP_PATTERN)]] = []
    expires_minutes: Annotated[int, Field(ge=1, le=24 * 60)] = 15
    notify: Literal["channel", "dm"] = "channel"  # where the Approve / Deny message goes
    # The key that encrypts a held password when the store is not embedded (the embedded store's key
    # otherwise): 32 random bytes in URL-safe base64, as `atp-bot store init` writes one.
    key_env: str | None = None
    key_file: Path | None = None

    @model_validator(mode="after")
    def _one_key_source(self) -> ApprovalsConfig:
        _one_secret_source("key", self.key_env, self.key_file)
        return self


class ObservabilityConfig(_Model):
    """`[observability]`: `/healthz` and `/metrics` of `atp-bot run` on a local port (off when unset)."""

    listen: str | None = None  # e.g. "127.0.0.1:9464"

    @field_validator("listen")
    @classmethod
    def _valid_listen(cls, value: str | None) -> str | None:
        if value is not None:
            parse_listen(value)
        return value


_DAILY_TIME = r"^(?:[01][0-9]|2[0-3]):[0-5][0-9]$"
_INTERVAL = r"^([1-9][0-9]{0,4})([mh])$"


class SchedulerConfig(_Model):
    """`[scheduler]`: the background jobs that watch the sensors and the password expiry."""

    enabled: bool = True
    monitor_interval_minutes: Annotated[int, Field(ge=1, le=24 * 60)] = 5
    recheck_delays_minutes: Annotated[
        list[Annotated[int, Field(ge=1, le=7 * 24 * 60)]], Field(max_length=10)
    ] = [2, 10]
    # "HH:MM" (UTC, daily) or an interval such as "12h" or "90m".
    expiry_check_time: str = "08:00"
    expiry_warning_days: Annotated[
        list[Annotated[int, Field(ge=0, le=365)]], Field(min_length=1, max_length=20)
    ] = [14, 7, 3, 1]
    # A sensor that cannot be reached is reported once, after this many consecutive failed cycles.
    unreachable_after: Annotated[int, Field(ge=1, le=1000)] = 3
    # SQLAlchemy URL of the job store (without a password); default: SQLite in the state directory.
    jobstore_url: str | None = None
    jobstore_password_env: str | None = None
    jobstore_password_file: Path | None = None
    # Two or more replicas: a PostgreSQL URL (without a password) whose session advisory lock elects the
    # one replica that runs the scheduler. Unset: a single instance runs it.
    leader_lock_url: str | None = None
    leader_lock_password_env: str | None = None
    leader_lock_password_file: Path | None = None
    # How often a standby tries to take the lock and the leader checks it still holds it.
    leader_poll_seconds: Annotated[float, Field(ge=0.1, le=60)] = 5.0

    @field_validator("expiry_check_time")
    @classmethod
    def _valid_check_time(cls, value: str) -> str:
        if not (re.match(_DAILY_TIME, value) or re.match(_INTERVAL, value)):
            raise ValueError(f'{value!r}: use a UTC time of day ("08:00") or an interval ("12h", "90m")')
        return value

    @field_validator("recheck_delays_minutes", "expiry_warning_days")
    @classmethod
    def _distinct(cls, value: list[int]) -> list[int]:
        if len(set(value)) != len(value):
            raise ValueError("a value is listed twice")
        return value

    @field_validator("jobstore_url")
    @classmethod
    def _jobstore_without_password(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            url = make_url(value)
        except ArgumentError:
            raise ValueError(
                "not a valid SQLAlchemy URL (e.g. sqlite:////var/lib/atp-bot/jobs.sqlite)"
            ) from None
        if url.password:
            raise ValueError(
                "must not contain a password: use jobstore_password_env or jobstore_password_file"
            )
        return value

    @field_validator("leader_lock_url")
    @classmethod
    def _leader_lock_on_postgresql(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            url = make_url(value)
        except ArgumentError:
            raise ValueError("not a valid SQLAlchemy URL (e.g. postgresql+psycopg://atp@db/atp)") from None
        if url.get_backend_name() != "postgresql":
            raise ValueError(
                "must be a PostgreSQL URL (advisory locks), e.g. postgresql+psycopg://atp@db/atp"
            )
        if url.password:
            raise ValueError(
                "must not contain a password: use leader_lock_password_env or leader_lock_password_file"
            )
        return value

    @model_validator(mode="after")
    def _shared_when_replicated(self) -> SchedulerConfig:
        _one_secret_source("jobstore_password", self.jobstore_password_env, self.jobstore_password_file)
        _one_secret_source(
            "leader_lock_password", self.leader_lock_password_env, self.leader_lock_password_file
        )
        if self.leader_lock_url is not None and (
            self.jobstore_url is None or make_url(self.jobstore_url).get_backend_name() == "sqlite"
        ):
            raise ValueError(
                "leader_lock_url (several replicas) needs a jobstore_url on a shared database such as "
                "PostgreSQL, so that every replica sees the same jobs"
            )
        return self

    def jobstore_password(self) -> SecretStr | None:
        if not (self.jobstore_password_env or self.jobstore_password_file):
            return None
        return read_secret(
            "scheduler.jobstore_password", env=self.jobstore_password_env, file=self.jobstore_password_file
        )

    def leader_lock(self) -> URL | None:
        """`leader_lock_url` with the password from `leader_lock_password_env`/`_file`; None when unset."""
        if self.leader_lock_url is None:
            return None
        url = make_url(self.leader_lock_url)
        if not (self.leader_lock_password_env or self.leader_lock_password_file):
            return url
        password = read_secret(
            "scheduler.leader_lock_password",
            env=self.leader_lock_password_env,
            file=self.leader_lock_password_file,
        )
        return url.set(password=password.get_secret_value())

    @property
    def expiry_daily_at(self) -> tuple[int, int] | None:
        """(hour, minute) UTC when the expiry check runs daily; None when it runs at an interval."""
        if re.match(_DAILY_TIME, self.expiry_check_time):
            hour, minute = self.expiry_check_time.split(":")
            return int(hour), int(minute)
        return None

    @property
    def expiry_interval_minutes(self) -> int | None:
        match = re.match(_INTERVAL, self.expiry_check_time)
        if match is None:
            return None
        return int(match.group(1)) * (60 if match.group(2) == "h" else 1)


DEFAULT_HEALTH_ISSUE_PATTERNS = ["directory services user credentials", "directory service account"]


class GraphConfig(_Model):
    """`[graph]`: optional Defender for Identity health issues from Microsoft Graph (app credentials)."""

    enabled: bool = False
    tenant_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9.-]{1,128}$")] | None = None
    client_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9-]{1,128}$")] | None = None
    client_secret_env: str | None = None
    client_secret_file: Path | None = None
    authority_url: str = "https://login.microsoftonline.com"
    graph_url: str = "https://graph.microsoft.com/v1.0"
    ca_file: Path | None = None
    timeout: Annotated[float, Field(gt=0, le=300)] = 30.0
    # A health issue is about the directory service account when its display name contains one of these
    # (case-insensitive).
    issue_patterns: Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)] = (
        DEFAULT_HEALTH_ISSUE_PATTERNS
    )

    @field_validator("authority_url", "graph_url")
    @classmethod
    def _https_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme != "https" or not parts.hostname or parts.query or parts.fragment or parts.username:
            raise ValueError(f"{value!r}: must be an https:// URL without query or credentials")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _complete_when_enabled(self) -> GraphConfig:
        _one_secret_source("client_secret", self.client_secret_env, self.client_secret_file)
        if self.enabled:
            missing = [
                name
                for name, value in (
                    ("tenant_id", self.tenant_id),
                    ("client_id", self.client_id),
                    (
                        "client_secret_env or client_secret_file",
                        self.client_secret_env or self.client_secret_file,
                    ),
                )
                if not value
            ]
            if missing:
                raise ValueError(f"enabled = true needs {', '.join(missing)}")
        return self

    def client_secret(self) -> SecretStr:
        return read_secret("graph.client_secret", env=self.client_secret_env, file=self.client_secret_file)


def _configured_env_names(value: object) -> set[str]:
    """The variables named by every `*_env` setting, anywhere in the (nested) configuration."""
    if isinstance(value, BaseModel):
        names: set[str] = set()
        for field, item in value:
            if field.endswith("_env") and isinstance(item, str) and item:
                names.add(item)
            else:
                names |= _configured_env_names(item)
        return names
    if isinstance(value, list):
        return {name for item in value for name in _configured_env_names(item)}
    return set()


def _no_secret_passed_on(pass_env: list[str], secret_names: frozenset[str]) -> None:
    secret = sorted(set(pass_env) & secret_names)
    if secret:
        raise ValueError(
            f"store.command.pass_env: {', '.join(secret)} holds a secret of atp-bot's configuration; "
            "the store command never gets a secret in its environment (only the password, on stdin)"
        )


class Settings(_Model):
    """The whole configuration file."""

    state_dir: Path | None = None
    accounts: Annotated[list[AccountConfig], Field(min_length=1)]
    lockout_guard: LockoutGuardConfig = LockoutGuardConfig()
    logging: LoggingConfig = LoggingConfig()
    winrm: WinRMConfig = WinRMConfig()
    sensors: list[SensorConfig] = []
    sensor_checks: SensorChecksConfig = SensorChecksConfig()
    store: StoreConfig = StoreConfig()
    audit: AuditConfig = AuditConfig()
    slack: SlackConfig = SlackConfig()
    observability: ObservabilityConfig = ObservabilityConfig()
    scheduler: SchedulerConfig = SchedulerConfig()
    graph: GraphConfig = GraphConfig()
    approvals: ApprovalsConfig = ApprovalsConfig()

    @field_validator("state_dir")
    @classmethod
    def _absolute_state_dir(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_absolute():
            raise ValueError(
                f"{str(value)!r} is relative: use an absolute path (a service does not start in your "
                "working directory), e.g. /var/lib/atp-bot"
            )
        return value

    @model_validator(mode="after")
    def _cross_references(self) -> Settings:
        ids = [a.id for a in self.accounts]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"account id used twice: {', '.join(duplicates)}")
        names = [s.name for s in self.sensors]
        duplicate_names = sorted({n for n in names if names.count(n) > 1})
        if duplicate_names:
            raise ValueError(f"sensor name used twice: {', '.join(duplicate_names)}")
        for index, sensor in enumerate(self.sensors):
            if sensor.account is not None and sensor.account not in ids:
                raise ValueError(f"sensors[{index}].account: no account with id {sensor.account!r}")
        self._no_transport_in_clear()
        if self.scheduler.leader_lock_url is not None:
            self._shared_by_replicas()
        if self.store.command is not None:
            _no_secret_passed_on(self.store.command.pass_env, self.secret_env_names())
        self._approvals_usable()
        return self

    def approval_required(self, account_id: str) -> bool:
        """Whether a new password for the account waits for a second person's approval."""
        own = self.account(account_id).approval
        return self.approvals.required if own is None else own

    def _approvals_usable(self) -> None:
        """Approval anywhere needs someone to approve, and a key for the held password."""
        if not any(self.approval_required(a.id) for a in self.accounts):
            return
        if not (self.approvals.approvers or self.approvals.approver_usergroups):
            raise ValueError("approvals.approvers: approval is required but nobody can approve")
        if self.store.backend != "embedded" and not (self.approvals.key_env or self.approvals.key_file):
            raise ValueError(
                "approvals.key_file: the store is not embedded, so the held password needs its own key "
                "(key_file or key_env)"
            )

    def _no_transport_in_clear(self) -> None:
        """Refuse a sensor whose transport needs TLS but whose endpoint is http:// (security review 11.9)."""
        clear = [
            (index, sensor.effective_transport(self.winrm))
            for index, sensor in enumerate(self.sensors)
            if sensor.over_http and sensor.effective_transport(self.winrm) in _NEEDS_HTTPS
        ]
        if not clear:
            return
        index, transport = clear[0]
        more = f" ({len(clear) - 1} more sensor(s) likewise)" if len(clear) > 1 else ""
        raise ValueError(
            f"sensors[{index}].endpoint: transport {transport!r} over http:// is refused: it "
            f"{_NEEDS_HTTPS[transport]}; use an https:// endpoint (https://host:5986/wsman, with ca_file) "
            f'or transport = "ntlm"{more}'
        )

    def secret_env_names(self) -> frozenset[str]:
        """Every environment variable that holds one of this configuration's secrets, Slack's included."""
        return frozenset(_configured_env_names(self)) | SLACK_SECRET_ENVS

    def _shared_by_replicas(self) -> None:
        """With replicas, what they must agree on cannot live in one replica's state directory."""
        if self.store.backend == "embedded":
            raise ValueError(
                'store.backend: "embedded" keeps the credential in one replica\'s state directory, so '
                "replicas would disagree on it; with [scheduler] leader_lock_url (several replicas) use "
                'backend "ata-center" or "command", whose target every replica shares'
            )
        if self.audit.url is None or make_url(self.audit.url).get_backend_name() == "sqlite":
            raise ValueError(
                "audit.url: with [scheduler] leader_lock_url (several replicas) the audit trail must be "
                "one database that every replica writes, such as PostgreSQL; a file per replica would "
                "split the trail (and lose it with the replica's volume)"
            )

    def account(self, account_id: str) -> AccountConfig:
        for account in self.accounts:
            if account.id == account_id:
                return account
        known = ", ".join(a.id for a in self.accounts)
        raise UsageError([f"no account with id {account_id!r} (configured: {known})"])


def insecure_settings(settings: Settings) -> list[str]:
    """Allowed settings that weaken security: logged at every start and printed by `config check`."""
    warnings = [
        f"account {account.id}: TLS certificate verification is disabled (tls_verify = false)"
        for account in settings.accounts
        if not account.tls_verify
    ]
    for sensor in settings.sensors:
        if not sensor.effective_cert_validation(settings.winrm):
            warnings.append(
                f"sensor {sensor.name}: WinRM certificate validation is disabled (cert_validation = false)"
            )
        if sensor.over_http and sensor.effective_transport(settings.winrm) == "ntlm":
            warnings.append(
                f"sensor {sensor.name}: NTLM over http:// ({sensor.endpoint}); messages are sealed, but the "
                "host is not authenticated: prefer https://"
            )
    center = settings.store.ata_center
    if settings.store.backend == "ata-center" and center is not None and not center.tls_verify:
        warnings.append("store.ata_center: TLS certificate verification is disabled (tls_verify = false)")
    return warnings


def resolve_config_path(cli_value: str | None) -> Path:
    """`--config`, else `$ATP_BOT_CONFIG`, else `./atp-bot.toml`."""
    return Path(cli_value or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_NAME)


@dataclass(frozen=True)
class ConfigSource:
    """The file a configuration came from, to point each problem at its key path, file and line."""

    name: str
    lines: TomlLines

    @classmethod
    def of(cls, name: str, text: str) -> ConfigSource:
        return cls(name, TomlLines(text))

    def problem(self, loc: Location, message: str) -> str:
        """`accounts[0].ca_file: <message> (atp-bot.toml, line 7)`."""
        line = self.lines.line(loc)
        place = f"{self.name}, line {line}" if line else self.name
        where = format_location(loc)
        return f"{where}: {message} ({place})" if where else f"{message} ({place})"


def format_validation_error(
    error: ValidationError, root: type[BaseModel] | None = None, source: ConfigSource | None = None
) -> list[str]:
    """One line per problem, in plain words, located like `accounts[0].domain_controllers: …` (and by file
    and line with a `source`). `root` is the validated model, for "did you mean" suggestions."""
    problems = []
    for item in error.errors(include_url=False, include_input=False):
        loc: Location = tuple(item["loc"])
        message = plain_message(item, root or BaseModel)
        prefix, sep, rest = message.partition(": ")
        if not loc and sep and (named := parse_location(prefix)):  # a cross-check names its key itself
            loc, message = named, rest
        if source is not None:
            problems.append(source.problem(loc, message))
        else:
            where = format_location(loc)
            problems.append(f"{where}: {message}" if where else message)
    return problems


def _json_scalar(value: object) -> str:
    """TOML's dates and times, which JSON lacks, as the text a string key would have held."""
    return str(value)


def parse_settings(text: str, source: str = "<config>") -> Settings:
    """Validate strictly: a string is not a bool or a number (`tls_verify = "yes"` is an error, not true).

    Validated as JSON, whose strict mode still reads paths from strings; TOML's values are JSON's.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{source}: not valid TOML: {exc}"]) from None
    try:
        return Settings.model_validate_json(json.dumps(data, default=_json_scalar), strict=True)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, Settings, ConfigSource.of(source, text))) from None


def read_config_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{path}: no such configuration file (use --config or ${CONFIG_ENV})"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: not UTF-8 text"]) from None


def load_settings(path: Path) -> Settings:
    return parse_settings(read_config_text(path), str(path))
