"""Sensor checks over WinRM: service states, credential errors in the error log, starting a service.

`check_sensors` fans out over a bounded thread pool; each sensor is checked within its own deadline
and its result is delivered (callback and list, or `iter_check_results`) as soon as it is known, so a
slow or dead host never delays or breaks the others.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from pydantic import SecretStr, ValidationError

from bot.config import ConfigError, Settings
from bot.infra.redaction import active_secret
from bot.sensors.credential_signatures import error_reason
from bot.sensors.results import (
    NOT_INSTALLED,
    CredentialErrors,
    Failure,
    LogPosition,
    SensorResult,
    ServiceStartResult,
    ServiceStatus,
)
from bot.sensors.scripts import (
    CHECK_SENSOR,
    START_SERVICE,
    CheckOutput,
    CheckParams,
    PositionParam,
    StartOutput,
    StartParams,
)
from bot.sensors.targets import SensorTarget, resolve_target, resolve_targets
from bot.sensors.winrm_runner import FailureKind, RemoteFailure, ScriptOutput, run_powershell

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CheckPlan:
    """Everything one sensor's check needs, read in advance (it may travel to a worker process)."""

    target: SensorTarget
    password: SecretStr | None
    params: CheckParams
    deadline_seconds: float


class PlanRunner(Protocol):
    """Runs the checks of a list of plans, yielding each result as soon as it is known (any order)."""

    def run(self, plans: Sequence[CheckPlan]) -> Iterator[SensorResult]: ...


class SensorChecker(Protocol):
    """Checks sensors, reporting each result as it comes (`check_sensors`, `CheckWorkers.check_sensors`,
    or a test's)."""

    def __call__(
        self,
        settings: Settings,
        names: Sequence[str] | None = None,
        *,
        since: datetime | None = None,
        positions: Mapping[str, LogPosition] | None = None,
        on_result: Callable[[SensorResult], None] | None = None,
    ) -> list[SensorResult]: ...


@dataclass(frozen=True)
class ThreadFanout:
    """The checks in this process, `pool_size` at a time (the CLI; `[sensor_checks] worker_processes = 0`)."""

    pool_size: int

    def run(self, plans: Sequence[CheckPlan]) -> Iterator[SensorResult]:
        pool = ThreadPoolExecutor(max_workers=min(self.pool_size, len(plans)), thread_name_prefix="sensor")
        try:
            futures = [pool.submit(check_planned, plan) for plan in plans]
            for future in as_completed(futures):
                yield future.result()
        finally:  # a caller that stops early (Ctrl-C) waits for no sensor: each ends by its deadline
            pool.shutdown(wait=False, cancel_futures=True)


def parse_log_time(stamp: str | None) -> datetime | None:
    """A log line's leading timestamp (the sensors write UTC) as an aware datetime."""
    if not stamp:
        return None
    try:
        return datetime.fromisoformat(stamp.replace(" ", "T", 1)).replace(tzinfo=UTC)
    except ValueError:
        return None


def _read_passwords(targets: Sequence[SensorTarget]) -> dict[str, SecretStr | None]:
    """Read each sensor's password once, before anything is contacted; a missing one stops everything."""
    passwords: dict[str, SecretStr | None] = {}
    problems: list[str] = []
    for target in targets:
        try:
            passwords[target.name] = target.read_password()
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)
    return passwords


def _check_params(
    settings: Settings, target: SensorTarget, since: datetime, position: LogPosition | None
) -> CheckParams:
    return CheckParams(
        services=list(target.services),
        log_dir=target.log_dir,
        error_log=target.error_log,
        binary_service=target.binary_service,
        patterns=list(target.patterns),
        position=PositionParam(path=position.path, file_id=position.file_id, offset=position.offset)
        if position
        else None,
        since=None if position else since.astimezone(UTC).isoformat(),
        max_bytes=settings.sensor_checks.max_scan_bytes,
    )


def _script_failure(output: ScriptOutput, what: str) -> RemoteFailure:
    detail = output.stderr.splitlines()[0][:300] if output.stderr else f"exit code {output.exit_code}"
    return RemoteFailure(FailureKind.SCRIPT_ERROR, f"{what}: {detail}")


def _parse_check(output: ScriptOutput) -> CheckOutput:
    if output.exit_code != 0:
        raise _script_failure(output, "the check script failed")
    try:
        return CheckOutput.model_validate_json(output.stdout.strip())
    except ValidationError:
        raise RemoteFailure(FailureKind.SCRIPT_ERROR, "the check script returned unexpected output") from None


def _check_one(plan: CheckPlan) -> SensorResult:
    target = plan.target
    started, checked_at = time.monotonic(), datetime.now(UTC)
    try:
        output = run_powershell(
            target, plan.password, CHECK_SENSOR.render(plan.params), deadline=started + plan.deadline_seconds
        )
        parsed = _parse_check(output)
    except RemoteFailure as exc:
        log.info("sensor %s: check failed: %s", target.name, exc)
        failure = Failure(exc.kind, exc.detail)
        return SensorResult.failed(
            target, failure, checked_at=checked_at, duration=time.monotonic() - started
        )
    services = tuple(ServiceStatus(s.name, s.state or NOT_INSTALLED) for s in parsed.services)
    errors, position = None, None
    if parsed.log:
        found = parsed.log
        errors = CredentialErrors(
            count=found.matches,
            first=parse_log_time(found.first),
            last=parse_log_time(found.last),
            sample=found.sample,
            log_path=found.path,
            bytes_read=found.bytes_read,
            complete=found.complete,
            rotated=found.rotated,
            reset=found.reset,
            reason=error_reason(found.sample, target.gmsa_patterns),
        )
        position = LogPosition(path=found.path, file_id=found.file_id, offset=found.offset)
    result = SensorResult(
        name=target.name,
        endpoint=target.endpoint,
        kind=target.kind,
        account=target.account,
        checked_at=checked_at,
        duration=time.monotonic() - started,
        services=services,
        credential_errors=errors,
        log_error=parsed.log_error,
        position=position,
        sense_identity=parsed.sense_identity,
    )
    log.info(
        "sensor %s: checked in %.2fs, problems: %s", target.name, result.duration, result.problems or "none"
    )
    return result


def check_planned(plan: CheckPlan) -> SensorResult:
    """`_check_one`, but a bug in handling one sensor becomes that sensor's failure, not everyone's."""
    try:
        return _check_one(plan)
    except Exception as exc:  # isolate each sensor
        log.exception("sensor %s: unexpected error during the check", plan.target.name)
        return SensorResult.failed(
            plan.target, Failure(FailureKind.WINRM_FAULT, f"unexpected {type(exc).__name__}")
        )


def iter_check_results(
    settings: Settings,
    names: Sequence[str] | None = None,
    *,
    since: datetime | None = None,
    positions: Mapping[str, LogPosition] | None = None,
    runner: PlanRunner | None = None,
) -> Iterator[SensorResult]:
    """Check the sensors concurrently and yield each result as soon as that sensor is done.

    A sensor with a saved position is scanned from it (only appended bytes); the others from `since`
    (default: `sensor_checks.default_window_minutes` ago). `runner` does the checks (default: this
    process's threads, `ThreadFanout`).
    """
    targets = resolve_targets(settings, names)
    passwords = _read_passwords(targets)
    checks = settings.sensor_checks
    window_start = since or datetime.now(UTC) - timedelta(minutes=checks.default_window_minutes)
    if window_start.tzinfo is None:
        raise ConfigError(["since: a timezone-aware datetime is required"])
    plans = [
        CheckPlan(
            target=t,
            password=passwords[t.name],
            params=_check_params(settings, t, window_start, (positions or {}).get(t.name)),
            deadline_seconds=checks.host_timeout,
        )
        for t in targets
    ]
    if not plans:
        return
    with ExitStack() as secrets:
        for password in {p.get_secret_value(): p for p in passwords.values() if p}.values():
            secrets.enter_context(active_secret(password))
        yield from (runner or ThreadFanout(checks.pool_size)).run(plans)


def check_sensors(
    settings: Settings,
    names: Sequence[str] | None = None,
    *,
    since: datetime | None = None,
    positions: Mapping[str, LogPosition] | None = None,
    on_result: Callable[[SensorResult], None] | None = None,
    runner: PlanRunner | None = None,
) -> list[SensorResult]:
    """Check the sensors; `on_result` is called (from the calling thread) as each one finishes.

    Returns every result in configuration order.
    """
    results = {}
    for result in iter_check_results(settings, names, since=since, positions=positions, runner=runner):
        results[result.name] = result
        _record_metrics(result)
        if on_result:
            on_result(result)
    order = [t.name for t in resolve_targets(settings, names)]
    return [results[name] for name in order]


def _record_metrics(result: SensorResult) -> None:
    from bot.infra import metrics  # not at import: a check worker process counts nothing

    outcome = "unreachable" if not result.reachable else "healthy" if result.healthy else "problem"
    metrics.SENSOR_CHECKS.labels(outcome, result.failure.kind if result.failure else "none").inc()
    metrics.SENSOR_CHECK_SECONDS.observe(result.duration)


def not_checked(settings: Settings, names: Sequence[str], problem: str) -> list[SensorResult]:
    """Results for sensors that could not be checked at all because of the configuration (e.g. a WinRM
    password that cannot be read): each one reachable by nobody, with `problem` as its failure."""
    configured = {s.name: s for s in settings.sensors}
    now = datetime.now(UTC)
    failure = Failure(FailureKind.CONFIG, problem)
    return [SensorResult.failed(configured[name], failure, checked_at=now) for name in names]


def start_service(settings: Settings, sensor_name: str, service: str) -> ServiceStartResult:
    """`Start-Service` one of the sensor's configured services and report the state it reached."""
    (target,) = resolve_targets(settings, [sensor_name])
    if service not in target.services:
        raise ConfigError(
            [f"sensor {sensor_name}: {service!r} is not one of its services ({', '.join(target.services)})"]
        )
    password = target.read_password()
    started = time.monotonic()
    script = START_SERVICE.render(StartParams(service=service))
    with ExitStack() as secrets:
        if password:
            secrets.enter_context(active_secret(password))
        try:
            output = run_powershell(
                target, password, script, deadline=started + settings.sensor_checks.host_timeout + 30
            )
            if output.exit_code != 0:
                raise _script_failure(output, "the start script failed")
            try:
                parsed = StartOutput.model_validate_json(output.stdout.strip())
            except ValidationError:
                raise RemoteFailure(
                    FailureKind.SCRIPT_ERROR, "the start script returned unexpected output"
                ) from None
        except RemoteFailure as exc:
            return ServiceStartResult(
                sensor=sensor_name,
                service=service,
                duration=time.monotonic() - started,
                failure=Failure(exc.kind, exc.detail),
            )
    installed = parsed.error != NOT_INSTALLED
    result = ServiceStartResult(
        sensor=sensor_name,
        service=service,
        duration=time.monotonic() - started,
        before=parsed.before,
        after=(parsed.after or NOT_INSTALLED) if installed else NOT_INSTALLED,
        error=parsed.error,
    )
    log.info("sensor %s: start %s: %s -> %s", sensor_name, service, result.before, result.after)
    return result


__all__ = [
    "NOT_INSTALLED",
    "CredentialErrors",
    "Failure",
    "FailureKind",
    "LogPosition",
    "SensorResult",
    "ServiceStartResult",
    "ServiceStatus",
    "check_sensors",
    "iter_check_results",
    "resolve_target",
    "start_service",
]
