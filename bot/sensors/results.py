"""What a sensor check or a service start found: plain values shared by the checks, monitor and faces."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from bot.config import SensorKind
from bot.sensors.credential_signatures import ErrorReason, describe
from bot.sensors.scripts import PositionParam
from bot.sensors.winrm_runner import FailureKind

NOT_INSTALLED = "not installed"
CLASSIC_SERVICE = "AATPSensor"
RUNNING = "Running"


@dataclass(frozen=True)
class LogPosition:
    """Where the last scan of a sensor's error log stopped: file path, file identity and byte offset.

    `file_id` is `<n>:<hash>` of the file's first n bytes; it survives renames (rotation) and changes
    when a file is truncated and rewritten.
    """

    path: str
    file_id: str
    offset: int

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "file_id": self.file_id, "offset": self.offset}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LogPosition:
        param = PositionParam.model_validate(dict(data))
        return cls(path=param.path, file_id=param.file_id, offset=param.offset)


@dataclass(frozen=True)
class Failure:
    kind: FailureKind
    detail: str


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    state: str  # Running, Stopped, StartPending, … or NOT_INSTALLED

    @property
    def running(self) -> bool:
        return self.state == RUNNING


@dataclass(frozen=True)
class CredentialErrors:
    """Lines of the error log with a credential-error pattern, in the scanned window."""

    count: int
    first: datetime | None
    last: datetime | None
    sample: str | None
    log_path: str
    bytes_read: int
    complete: bool  # False: the scan stopped at sensor_checks.max_scan_bytes
    rotated: bool  # the log was rotated since the previous position; its tail was read too
    reset: bool  # the previous position no longer matched any file; the log was read from its start
    reason: ErrorReason = "password"  # a wrong password, or a gMSA the sensor may not retrieve


class Sensor(Protocol):
    """Who a result is about: a resolved target or a configured sensor."""

    @property
    def name(self) -> str: ...
    @property
    def endpoint(self) -> str: ...
    @property
    def kind(self) -> SensorKind: ...
    @property
    def account(self) -> str | None: ...


@dataclass(frozen=True)
class SensorResult:
    name: str
    endpoint: str
    kind: SensorKind
    account: str | None
    checked_at: datetime
    duration: float  # seconds
    services: tuple[ServiceStatus, ...] = ()
    credential_errors: CredentialErrors | None = None
    log_error: str | None = None
    position: LogPosition | None = None
    failure: Failure | None = None
    sense_identity: bool = False  # the unified sensor's process runs on the host

    @classmethod
    def failed(
        cls, target: Sensor, failure: Failure, *, checked_at: datetime | None = None, duration: float = 0.0
    ) -> SensorResult:
        """A sensor that could not be checked: nothing known but why."""
        return cls(
            name=target.name,
            endpoint=target.endpoint,
            kind=target.kind,
            account=target.account,
            checked_at=checked_at or datetime.now(UTC),
            duration=duration,
            failure=failure,
        )

    @property
    def reachable(self) -> bool:
        return self.failure is None

    @property
    def access_denied(self) -> bool:
        """The host answered and refused atp-bot's WinRM credential: a problem to fix, not an outage."""
        return self.failure is not None and self.failure.kind is FailureKind.ACCESS_DENIED

    @property
    def generation(self) -> Literal["2", "3", "unknown"]:
        """What the host shows: the classic sensor's service, else the unified sensor's process."""
        installed = {s.name.lower() for s in self.services if s.state != NOT_INSTALLED}
        if self.kind == "mdi" and CLASSIC_SERVICE.lower() in installed:
            return "2"
        return "3" if self.kind == "mdi" and self.sense_identity else "unknown"

    @property
    def problems(self) -> list[str]:
        if self.generation == "3":
            return []  # no AATP service and no classic log folder is how the unified sensor runs
        found = [f"service {s.name} is {s.state}" for s in self.services if not s.running]
        if self.credential_errors and self.credential_errors.count:
            errors = self.credential_errors
            found.append(f"{describe(errors.count, errors.reason)} in the sensor log")
        if self.log_error:
            found.append(f"error log: {self.log_error}")
        return found

    @property
    def healthy(self) -> bool:
        return self.reachable and not self.problems

    def to_json(self) -> dict[str, Any]:
        """The `atp-bot check --json` object (also what the scheduler may store)."""
        data: dict[str, Any] = {
            "name": self.name,
            "reachable": self.reachable,
            "healthy": self.healthy,
            "services": {s.name: s.state for s in self.services},
            "credential_errors": self.credential_errors.count if self.credential_errors else None,
            "duration": round(self.duration, 3),
        }
        errors = self.credential_errors
        if errors:
            data["first_error"] = errors.first.isoformat() if errors.first else None
            data["last_error"] = errors.last.isoformat() if errors.last else None
            data["sample"] = errors.sample
            data["credential_error_reason"] = errors.reason
        if self.log_error:
            data["log_error"] = self.log_error
        if self.position:
            data["position"] = self.position.to_json()
        if self.failure:
            data["error"] = f"{self.failure.kind}: {self.failure.detail}"
            data["error_kind"] = str(self.failure.kind)
        data["generation"] = self.generation
        return data


@dataclass(frozen=True)
class ServiceStartResult:
    sensor: str
    service: str
    duration: float
    before: str | None = None
    after: str | None = None  # NOT_INSTALLED if the service does not exist
    error: str | None = None  # what Start-Service reported
    failure: Failure | None = None

    @property
    def running(self) -> bool:
        return self.after == RUNNING
