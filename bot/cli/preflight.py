"""What can be checked of a configuration without contacting a peer: its files, their permissions, the
environment variables it names, and the sensors' resolved settings.

A configuration that parses may still fail later (a missing `ca_file`, an unset `*_env` variable, a
sensor without a WinRM username). Every command stops at once, with the key, file and line, on what is
wrong wherever it runs (a missing CA bundle or client certificate, a relative path, an empty secret).
What belongs to the service's environment (`*_env` variables, Slack tokens, secret files, which systemd's
credentials directory shows only inside the service) is reported by `atp-bot config check`, and is an
error with `--strict`: the systemd unit's ExecStartPre and the containers' gate run it before `run`.
"""

from __future__ import annotations

import ssl
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel

from bot.config import (
    SLACK_APP_TOKEN_ENV,
    SLACK_BOT_TOKEN_ENV,
    SLACK_SIGNING_SECRET_ENV,
    ConfigError,
    ConfigSource,
    Settings,
    parse_settings,
    read_config_text,
)
from bot.config.messages import Location
from bot.config.secret_env import environment_secret
from bot.sensors import resolve_targets

# Keys whose file atp-bot reads as a secret: nobody but the service's user (and group) may read it.
_SECRET_FILE_SUFFIXES = ("password_file", "secret_file", "cert_key_pem", "certificate_key_file")
# Files that `atp-bot store init` (or `audit init`) creates: they may not exist yet.
_CREATED_BY_INIT = {("store", "key_file"), ("store", "path"), ("audit", "key_file")}
_SET_IT = "set it where the service gets its environment (atp-bot.env, the Kubernetes Secret)"
# Variables that may be unset: the embedded store and the audit trail then read their key from key_file.
_OPTIONAL_ENV = {("store", "key_env"), ("audit", "key_env")}


@dataclass
class Findings:
    """`errors` stop every command; `environment` (unset variables, secret files missing here or readable
    by others) stops `config check --strict` only; `notes` are worth a look but stop nothing."""

    errors: list[str] = field(default_factory=list)
    environment: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class CheckedConfig:
    settings: Settings
    findings: Findings


def check_config_file(path: Path) -> CheckedConfig:
    """Parse the file (ConfigError if it cannot be parsed) and check it against this machine."""
    text = read_config_text(path)
    settings = parse_settings(text, str(path))
    return CheckedConfig(settings, preflight(settings, ConfigSource.of(str(path), text)))


def preflight(settings: Settings, source: ConfigSource) -> Findings:
    findings = Findings()
    inactive = _inactive_tables(settings)
    for loc, value in _values(settings):
        if any(loc[: len(off)] == off for off in inactive):
            continue
        name = str(loc[-1])
        if isinstance(value, Path) and (name.endswith("_file") or name.endswith("_pem")):
            _check_file(loc, value, source, findings)
        elif isinstance(value, str) and name.endswith("_env") and not _optional_or_set(loc, value):
            findings.environment.append(
                source.problem(loc, f"environment variable {value} is not set: {_SET_IT}")
            )
    _check_client_certificates(settings, source, findings)
    _check_slack_environment(settings, findings)
    try:
        resolve_targets(settings)
    except ConfigError as exc:
        findings.errors.extend(exc.problems)
    _check_sensor_accounts(settings, source, findings)
    return findings


def _optional_or_set(loc: Location, variable: str) -> bool:
    return loc in _OPTIONAL_ENV or bool(environment_secret(variable))


def _inactive_tables(settings: Settings) -> list[Location]:
    """Tables that configure something switched off: their files and variables are never read."""
    off: list[Location] = []
    if not (settings.graph.enabled or settings.graph.discover_sensors):
        off.append(("graph",))
    if settings.store.backend != "ata-center":
        off.append(("store", "ata_center"))
    if settings.store.backend != "embedded":
        off += [("store", "key_env"), ("store", "key_file")]
    return off


def _values(model: BaseModel, loc: Location = ()) -> Iterator[tuple[Location, object]]:
    """Every leaf value of the settings with its key path (`("accounts", 0, "ca_file")`)."""
    for name in type(model).model_fields:
        value, here = getattr(model, name), (*loc, name)
        if isinstance(value, BaseModel):
            yield from _values(value, here)
        elif isinstance(value, list) and any(isinstance(item, BaseModel) for item in value):
            for index, item in enumerate(value):
                yield from _values(item, (*here, index))
        else:
            yield here, value


def _check_file(loc: Location, path: Path, source: ConfigSource, findings: Findings) -> None:
    secret = str(loc[-1]).endswith(_SECRET_FILE_SUFFIXES)
    if not path.is_absolute():
        findings.errors.append(
            source.problem(
                loc, f"{path} is relative: use an absolute path (a service has its own working directory)"
            )
        )
        return
    if loc in _CREATED_BY_INIT and not path.exists():
        return
    try:
        mode, empty = _read_start(path)
    except OSError as exc:
        # A secret may exist only in the service's view (systemd's credentials directory), like a variable
        # of its environment: --strict, run where the service runs, makes that an error too.
        (findings.environment if secret else findings.errors).append(
            source.problem(loc, _unreadable(path, exc))
        )
        return
    if empty:
        findings.errors.append(
            source.problem(loc, f"{path} is empty: write the secret or certificate into it")
        )
    elif str(loc[-1]).endswith("ca_file"):
        _check_ca_bundle(loc, path, source, findings)
    # A key file, like the store's and the audit trail's, is the service user's alone; other secrets may
    # be shared with its group.
    if secret and mode & (0o077 if str(loc[-1]).endswith("key_file") else 0o007):
        findings.environment.append(
            source.problem(
                loc,
                f"{path} is accessible by others (mode {stat.S_IMODE(mode):04o}): a secret must be readable "
                f"by the service's user only; fix it with: chmod 600 {path}",
            )
        )


def _read_start(path: Path) -> tuple[int, bool]:
    """The file's mode, and whether it is empty (or blank); OSError when it cannot be read."""
    mode = path.stat().st_mode
    if not stat.S_ISREG(mode):
        raise IsADirectoryError(0, "not a regular file")
    with path.open("rb") as handle:
        return mode, not handle.read(4096).strip()


def _unreadable(path: Path, exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return f"{path} does not exist: correct the path or create the file"
    if isinstance(exc, IsADirectoryError):
        return f"{path} is not a regular file: name the file itself"
    return f"cannot read {path}: {exc.strerror}; make it readable by the service's user"


def _check_ca_bundle(loc: Location, path: Path, source: ConfigSource, findings: Findings) -> None:
    try:
        ssl.create_default_context(cafile=str(path))
    except ssl.SSLError:
        findings.errors.append(
            source.problem(loc, f"{path} holds no PEM certificate (a CA bundle is expected)")
        )


def _check_client_certificates(settings: Settings, source: ConfigSource, findings: Findings) -> None:
    """A certificate and its unencrypted key (pywinrm and MSAL take no passphrase): WinRM's cert_pem and
    cert_key_pem, and Graph's client_certificate_file and client_certificate_key_file."""
    pairs: list[tuple[Location, Path | None, Path | None]] = [
        (("winrm", "cert_pem"), settings.winrm.cert_pem, settings.winrm.cert_key_pem)
    ]
    pairs += [
        (("sensors", index, "cert_pem"), sensor.cert_pem, sensor.cert_key_pem)
        for index, sensor in enumerate(settings.sensors)
    ]
    graph = settings.graph
    if graph.enabled or graph.discover_sensors:
        pairs.append(
            (
                ("graph", "client_certificate_file"),
                graph.client_certificate_file,
                graph.client_certificate_key_file,
            )
        )
    for loc, cert, key in pairs:
        if cert is None or key is None or not (cert.is_file() and key.is_file()):
            continue  # missing files are reported by _check_file
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        try:
            context.load_cert_chain(cert, key, password=lambda: b"")
        except (ssl.SSLError, OSError):
            findings.errors.append(
                source.problem(
                    loc,
                    f"{cert} and {key} are not a PEM certificate and its matching, unencrypted private key",
                )
            )


def _check_slack_environment(settings: Settings, findings: Findings) -> None:
    """Slack's tokens, needed only when Slack is a face (a `[slack]` table): a CLI-only file needs none."""
    if not settings.slack_face:
        return
    socket = settings.slack.mode == "socket"
    needed = [SLACK_BOT_TOKEN_ENV, SLACK_APP_TOKEN_ENV if socket else SLACK_SIGNING_SECRET_ENV]
    findings.environment.extend(
        f"slack: environment variable {name} is not set (atp-bot run needs it in {settings.slack.mode} "
        f"mode): {_SET_IT}"
        for name in needed
        if not environment_secret(name)
    )


def _check_sensor_accounts(settings: Settings, source: ConfigSource, findings: Findings) -> None:
    if len(settings.accounts) < 2:
        return
    for index, sensor in enumerate(settings.sensors):
        if sensor.account is None:
            findings.notes.append(
                source.problem(
                    ("sensors", index),
                    f"sensor {sensor.name} names no account while {len(settings.accounts)} are configured: "
                    'it is checked after a change of any of them; set account = "<id>" to the one it uses',
                )
            )
