"""Per-sensor settings resolved from `[[sensors]]`, `[winrm]` and the product kind's defaults."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from bot.config import (
    ConfigError,
    SecretSource,
    SensorConfig,
    SensorKind,
    Settings,
    UsageError,
    WinRMTransport,
)


@dataclass(frozen=True)
class KindDefaults:
    services: tuple[str, ...]
    log_dir: str
    error_log: str
    binary_service: str | None = None


# Sources: docs/sensors.md ("Defaults per kind").
KIND_DEFAULTS: dict[SensorKind, KindDefaults] = {
    "mdi": KindDefaults(
        services=("AATPSensor", "AATPSensorUpdater"),
        log_dir="C:\\Program Files\\Azure Advanced Threat Protection Sensor\\*\\Logs",
        error_log="Microsoft.Tri.Sensor-Errors.log",
        binary_service="AATPSensor",
    ),
    "ata": KindDefaults(
        services=("ATAGateway",),
        log_dir="C:\\Program Files\\Microsoft Advanced Threat Analytics\\Gateway\\Logs",
        error_log="Microsoft.Tri.Gateway-Errors.log",
    ),
}


@dataclass(frozen=True)
class SensorTarget:
    """Everything needed to reach and check one sensor. `password` is read lazily (`read_password`)."""

    name: str
    endpoint: str
    kind: SensorKind
    account: str | None
    transport: WinRMTransport
    username: str | None
    password_env: str | None
    password_file: Path | None
    ca_file: Path | None
    cert_validation: bool
    cert_pem: Path | None
    cert_key_pem: Path | None
    operation_timeout: int
    services: tuple[str, ...]
    log_dir: str
    error_log: str
    patterns: tuple[str, ...]  # credential errors of either reason (what the sensor counts)
    binary_service: str | None  # the log folder follows this service's binary (unless log_dir is set)
    gmsa_patterns: tuple[str, ...]

    def read_password(self) -> SecretStr | None:
        """The WinRM password; None for certificate authentication."""
        if self.transport == "certificate":
            return None
        return SecretSource(
            f"sensors[{self.name}].winrm", "password", self.password_env, self.password_file
        ).read()


def resolve_target(settings: Settings, sensor: SensorConfig) -> SensorTarget:
    winrm, checks = settings.winrm, settings.sensor_checks
    defaults = KIND_DEFAULTS[sensor.kind]
    # A sensor that names its own secret source replaces both of the [winrm] sources.
    own_secret = sensor.password_env is not None or sensor.password_file is not None
    transport = sensor.effective_transport(winrm)
    username = sensor.username or winrm.username
    target = SensorTarget(
        name=sensor.name,
        endpoint=sensor.endpoint,
        kind=sensor.kind,
        account=sensor.account,
        transport=transport,
        username=username,
        password_env=sensor.password_env if own_secret else winrm.password_env,
        password_file=sensor.password_file if own_secret else winrm.password_file,
        ca_file=sensor.ca_file or winrm.ca_file,
        cert_validation=sensor.effective_cert_validation(winrm),
        cert_pem=sensor.cert_pem or winrm.cert_pem,
        cert_key_pem=sensor.cert_key_pem or winrm.cert_key_pem,
        operation_timeout=winrm.operation_timeout,
        services=tuple(sensor.services or defaults.services),
        log_dir=sensor.log_dir or defaults.log_dir,
        error_log=sensor.error_log or defaults.error_log,
        patterns=(
            *(sensor.credential_error_patterns or checks.credential_error_patterns),
            *checks.gmsa_error_patterns,
        ),
        gmsa_patterns=tuple(checks.gmsa_error_patterns),
        binary_service=defaults.binary_service if sensor.log_dir is None else None,
    )
    problems = []
    if transport == "certificate" and not target.cert_pem:
        problems.append(f"sensors[{sensor.name}]: transport certificate needs cert_pem and cert_key_pem")
    if transport != "certificate" and not username:
        problems.append(f"sensors[{sensor.name}]: no WinRM username (set [winrm].username)")
    if transport != "certificate" and not (target.password_env or target.password_file):
        problems.append(f"sensors[{sensor.name}]: no WinRM password_env or password_file")
    if problems:
        raise ConfigError(problems)
    return target


def resolve_targets(settings: Settings, names: Sequence[str] | None = None) -> list[SensorTarget]:
    """The sensors to check, in configuration order; unknown names are a configuration error."""
    if names:
        known = {s.name for s in settings.sensors}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise UsageError(
                [f"no sensor named {n!r} (configured: {', '.join(sorted(known)) or 'none'})" for n in unknown]
            )
        wanted = set(names)
        sensors = [s for s in settings.sensors if s.name in wanted]
    else:
        sensors = list(settings.sensors)
    return [resolve_target(settings, s) for s in sensors]
