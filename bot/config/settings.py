"""The configuration file: one TOML file validated into typed models, one module per section."""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ValidationError, field_validator, model_validator

from bot.config.accounts import AccountConfig, LockoutGuardConfig
from bot.config.approvals import ApprovalsConfig
from bot.config.audit import AuditConfig
from bot.config.base import StrictModel, database_url
from bot.config.core import ConfigError, UsageError, read_config_text
from bot.config.graph import GraphConfig
from bot.config.messages import Location, TomlLines, format_location, parse_location, plain_message
from bot.config.scheduler import SchedulerConfig
from bot.config.sensors import NEEDS_HTTPS, SensorChecksConfig, SensorConfig, WinRMConfig
from bot.config.service import LoggingConfig, ObservabilityConfig
from bot.config.slack import SLACK_SECRET_ENVS, SlackConfig
from bot.config.store import StoreConfig


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


class Settings(StrictModel):
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
        if self.store.backend != "embedded" and not self.approvals.key_source.configured:
            raise ValueError(
                "approvals.key_file: the store is not embedded, so the held password needs its own key "
                "(key_file or key_env)"
            )

    @property
    def slack_face(self) -> bool:
        """Whether Slack is a face of the bot: the file has a `[slack]` table (an empty one means Socket
        Mode with the defaults). Without one, only the CLI is used: no Slack token is needed, and
        `atp-bot run`, which serves the chat faces, refuses to start."""
        return "slack" in self.model_fields_set

    def secret_env_names(self) -> frozenset[str]:
        """Every environment variable that holds one of this configuration's secrets, Slack's included."""
        return frozenset(_configured_env_names(self)) | SLACK_SECRET_ENVS

    def _no_transport_in_clear(self) -> None:
        """Refuse a sensor whose transport needs TLS but whose endpoint is http:// (security review 11.9),
        and `endpoint_template` likewise: it addresses every sensor only Graph knows."""
        clear = [
            (f"sensors[{index}].endpoint", sensor.effective_transport(self.winrm))
            for index, sensor in enumerate(self.sensors)
            if sensor.over_http and sensor.effective_transport(self.winrm) in NEEDS_HTTPS
        ]
        template = self.winrm.template_sensor
        if (
            template is not None
            and template.over_http
            and template.effective_transport(self.winrm) in NEEDS_HTTPS
        ):
            clear.insert(0, ("winrm.endpoint_template", template.effective_transport(self.winrm)))
        if not clear:
            return
        where, transport = clear[0]
        more = f" ({len(clear) - 1} more sensor(s) likewise)" if len(clear) > 1 else ""
        raise ValueError(
            f"{where}: transport {transport!r} over http:// is refused: it "
            f"{NEEDS_HTTPS[transport]}; use an https:// endpoint (https://host:5986/wsman, with ca_file) "
            f'or transport = "ntlm"{more}'
        )

    def _shared_by_replicas(self) -> None:
        """With replicas, what they must agree on cannot live in one replica's state directory."""
        if self.store.backend == "embedded":
            raise ValueError(
                'store.backend: "embedded" keeps the credential in one replica\'s state directory, so '
                "replicas would disagree on it; with [scheduler] leader_lock_url (several replicas) use "
                'backend "ata-center" or "command", whose target every replica shares'
            )
        if self.audit.url is None or database_url(self.audit.url, "").get_backend_name() == "sqlite":
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


def insecure_settings(settings: Settings, *, sensors: bool = True) -> list[str]:
    """Allowed settings that weaken security: printed by `config check` (each sensor named) and logged at
    the start of every command; with `sensors=False`, without the sensors' WinRM transport, which only the
    commands that contact sensors tell (`sensor_transport_warnings`)."""
    warnings = [
        f"account {account.id}: TLS certificate verification is disabled (tls_verify = false)"
        for account in settings.accounts
        if not account.tls_verify
    ]
    if sensors:
        warnings += [f"{what}: {problem}{detail}" for what, problem, detail in _weak_transports(settings)]
    center = settings.store.ata_center
    if settings.store.backend == "ata-center" and center is not None and not center.tls_verify:
        warnings.append("store.ata_center: TLS certificate verification is disabled (tls_verify = false)")
    return warnings


CERT_VALIDATION_OFF = "WinRM certificate validation is disabled (cert_validation = false)"
NTLM_OVER_HTTP = "NTLM over http://"
_HOST_NOT_AUTHENTICATED = "messages are sealed, but the {} not authenticated: prefer https://"
NAMED_IN_SUMMARY = 3


def _weak_transports(settings: Settings) -> list[tuple[str, str, str]]:
    """(which sensor, problem, detail) for each sensor (and the endpoint template) with a weak transport."""
    found = []
    template = settings.winrm.template_sensor
    named = [(f"sensor {s.name}", s) for s in settings.sensors]
    for what, sensor in [*named, *([("winrm.endpoint_template", template)] if template else [])]:
        if not sensor.effective_cert_validation(settings.winrm):
            found.append((what, CERT_VALIDATION_OFF, ""))
        if sensor.over_http and sensor.effective_transport(settings.winrm) == "ntlm":
            detail = f" ({sensor.endpoint}); " + _HOST_NOT_AUTHENTICATED.format("host is")
            found.append((what, NTLM_OVER_HTTP, detail))
    return found


def sensor_transport_warnings(settings: Settings) -> list[str]:
    """The sensors' weak WinRM transports, one line per problem: the sensor itself when it is the only
    one, else how many and the first few names (`config check` names each)."""
    by_problem: dict[str, list[tuple[str, str]]] = {}
    for what, problem, detail in _weak_transports(settings):
        by_problem.setdefault(problem, []).append((what, detail))
    lines = []
    for problem, sensors in by_problem.items():
        if len(sensors) == 1:
            ((what, detail),) = sensors
            lines.append(f"{what}: {problem}{detail}")
            continue
        names = [what.removeprefix("sensor ") for what, _ in sensors]
        shown = ", ".join(names[:NAMED_IN_SUMMARY])
        more = f" and {len(names) - NAMED_IN_SUMMARY} more" if len(names) > NAMED_IN_SUMMARY else ""
        why = f"; {_HOST_NOT_AUTHENTICATED.format('hosts are')}" if problem == NTLM_OVER_HTTP else ""
        lines.append(f"{len(names)} sensors ({shown}{more}): {problem}{why}")
    return lines


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


def load_settings(path: Path) -> Settings:
    return parse_settings(read_config_text(path), str(path))
