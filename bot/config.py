"""The configuration file: one TOML file validated into typed models.

Secrets are never in the file: every secret is named by an environment variable (`*_env`) or a file
(`*_file`) and read only when it is needed, into a `SecretStr`.
"""

from __future__ import annotations

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

CONFIG_ENV = "ATP_BOT_CONFIG"
DEFAULT_CONFIG_NAME = "atp-bot.toml"

ACCOUNT_ID_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,62}$"


class ConfigError(Exception):
    """The configuration cannot be used; `problems` holds one precise line per problem."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


class _Model(BaseModel):
    """Strict base: unknown keys are errors, so a typo never silently falls back to a default."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def read_secret(what: str, *, env: str | None, file: Path | None) -> SecretStr:
    """Read a secret from an environment variable or a file; errors name the source, never a value."""
    if env:
        value = os.environ.get(env)
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
    # DNS domains whose sensors use this account (their follow-up checks count for its changes);
    # default: the account's own domain (UPN suffix, else base_dn, else its domain controllers' domain).
    domains: (
        Annotated[
            list[Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9.-]{0,252}$")]], Field(min_length=1)
        ]
        | None
    ) = None

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

    @property
    def dns_domains(self) -> tuple[str, ...]:
        """`domains`, else the account's own DNS domain; empty when none can be told."""
        if self.domains:
            return tuple(d.lower().rstrip(".") for d in self.domains)
        name = self.name
        if name.style == "upn":
            return (name.domain.lower(),)
        rdns = [part.strip().partition("=") for part in (self.base_dn or "").split(",")]
        labels = [value.strip().lower() for key, _, value in rdns if key.strip().lower() == "dc"]
        if labels:
            return (".".join(labels),)
        hosts = [dc.host.lower() for dc in self.dcs if not dc.host.replace(".", "").isdigit()]
        return tuple(sorted({h.partition(".")[2] for h in hosts if h.count(".") >= 2}))


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
    # Endpoint of a sensor found in Graph ([graph] discover_sensors) but not in [[sensors]], from its DNS
    # name, e.g. "https://{dns_name}:5986/wsman"; unset: such sensors get Graph-only checks.
    endpoint_template: str | None = None

    @field_validator("endpoint_template")
    @classmethod
    def _valid_template(cls, value: str | None) -> str | None:
        if value is not None:
            if value.count("{dns_name}") != 1 or value.replace("{dns_name}", "").count("{"):
                raise ValueError("must contain {dns_name} once and no other placeholder")
            parse_winrm_endpoint(value.replace("{dns_name}", "sensor.example"))
        return value


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


class SensorChecksConfig(_Model):
    """`[sensor_checks]`: how `atp-bot check` and the follow-up checks fan out."""

    pool_size: Annotated[int, Field(ge=1, le=1024)] = 32
    # Wall-clock limit for one sensor (connect, authenticate, run, read output).
    host_timeout: Annotated[float, Field(gt=0, le=3600)] = 60.0
    credential_error_patterns: Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)] = [
        "The supplied credential is invalid."
    ]
    # Sensor log lines of a gMSA whose password the sensor may not retrieve (reported apart from a wrong
    # password); an empty list turns them off.
    gmsa_error_patterns: list[Annotated[str, Field(min_length=1)]] = [
        "failed to retrieve group managed service account password",
        "GMSA password could not be retrieved",
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
    listen: str = "0.0.0.0:3000"  # HTTP mode: Slack must reach it
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
    # List the sensors from Graph (needs SecurityIdentitiesSensors.Read.All as well) and merge them with
    # [[sensors]] by DNS name; see docs/graph.md.
    discover_sensors: bool = False
    # After a saved change, watch the DSA health issues (needs enabled = true): post in the change's thread
    # when MDI closes them, or that one is still open after this many minutes; polled this often.
    issue_watch_minutes: Annotated[int, Field(ge=1, le=7 * 24 * 60)] = 60
    issue_watch_poll_minutes: Annotated[int, Field(ge=1, le=24 * 60)] = 5
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
        if self.enabled or self.discover_sensors:
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
                switch = "enabled" if self.enabled else "discover_sensors"
                raise ValueError(f"{switch} = true needs {', '.join(missing)}")
        return self

    def client_secret(self) -> SecretStr:
        return read_secret("graph.client_secret", env=self.client_secret_env, file=self.client_secret_file)


class Settings(_Model):
    """The whole configuration file."""

    state_dir: Path | None = None
    # At least one, except for a fleet view alone (`atp-bot sensors` with [graph] discover_sensors).
    accounts: list[AccountConfig] = []
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

    @model_validator(mode="after")
    def _cross_references(self) -> Settings:
        if not self.accounts and not self.graph.discover_sensors:
            raise ValueError("accounts: at least one [[accounts]] table is needed")
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
        if self.scheduler.leader_lock_url is not None:
            self._shared_by_replicas()
        return self

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
        raise ConfigError([f"no account with id {account_id!r} (configured: {known})"])


def insecure_settings(settings: Settings) -> list[str]:
    """Warnings to log on every start for settings that weaken security."""
    return [
        f"account {account.id}: TLS certificate verification is disabled (tls_verify = false)"
        for account in settings.accounts
        if not account.tls_verify
    ]


def resolve_config_path(cli_value: str | None) -> Path:
    """`--config`, else `$ATP_BOT_CONFIG`, else `./atp-bot.toml`."""
    return Path(cli_value or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_NAME)


def _location(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text


def format_validation_error(error: ValidationError) -> list[str]:
    """One line per problem, located like `accounts[0].domain_controllers: …`."""
    problems = []
    for item in error.errors(include_url=False, include_input=False):
        message = item["msg"].removeprefix("Value error, ")
        where = _location(tuple(item["loc"]))
        problems.append(f"{where}: {message}" if where else message)
    return problems


def parse_settings(text: str, source: str = "<config>") -> Settings:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{source}: not valid TOML: {exc}"]) from None
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from None


def load_settings(path: Path) -> Settings:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{path}: no such configuration file (use --config or ${CONFIG_ENV})"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
    return parse_settings(text, str(path))
