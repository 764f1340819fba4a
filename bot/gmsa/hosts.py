"""The host side of `gmsa check`: on each sensor reachable over WinRM, `Test-ADServiceAccount` and the
"Log on as a service" right (a GPO that sets it without the gMSA or NT SERVICE\\ALL SERVICES keeps the
sensor service from starting)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pydantic import ValidationError

from bot.config import AccountConfig, ConfigError, SensorConfig, Settings
from bot.fleet import Generation
from bot.gmsa.core import Check, Status
from bot.sensors import Failure, ScriptPlan, ScriptRun, ScriptRunner
from bot.sensors.scripts import GMSA_HOST, GmsaHostOutput, GmsaHostParams
from bot.sensors.targets import SensorTarget, resolve_target
from bot.sensors.winrm_runner import FailureKind, RemoteFailure

ALL_SERVICES_SID = "S-1-5-80-0"
_ALL_SERVICES_NAMES = {f"*{ALL_SERVICES_SID}".lower(), "nt service\\all services"}
_UNREACHABLE = {FailureKind.UNREACHABLE, FailureKind.TIMEOUT}


def logon_right_allows(entries: Sequence[str], account: AccountConfig, gmsa_sid: str | None) -> bool:
    """Whether SeServiceLogonRight lets the gMSA's service log on: it names the gMSA or ALL SERVICES."""
    names = {e.strip().lower() for e in entries}
    gmsa = {account.username.lower()}
    gmsa |= {f"*{gmsa_sid}".lower()} if gmsa_sid else set()
    named = any(n.rsplit("\\", 1)[-1] in gmsa or n in gmsa for n in names)
    return named or bool(names & _ALL_SERVICES_NAMES)


def judge_host(sensor: str, account: AccountConfig, gmsa_sid: str | None, output: GmsaHostOutput) -> Check:
    """One sensor's host check from what the script reported (pure)."""
    name, identity = f"host:{sensor}", account.username.removesuffix("$")
    problems, fixes, unknown = [], [], []
    if output.test_ad_service_account is False:
        problems.append(f"Test-ADServiceAccount says {sensor} cannot use {account.username}.")
        fixes.append(f"On {sensor}: klist purge -li 0x3e7, then Test-ADServiceAccount -Identity '{identity}'")
    elif output.test_ad_service_account is None:
        unknown.append(f"Test-ADServiceAccount did not run on {sensor}: {output.test_error or 'no answer'}.")
        fixes.append(f"On {sensor}: Install-WindowsFeature RSAT-AD-PowerShell")
    if output.service_logon is None:
        unknown.append(f'The "Log on as a service" right was not read: {output.policy_error or "no answer"}.')
    elif not logon_right_allows(output.service_logon, account, gmsa_sid):
        problems.append(
            f'On {sensor}, the "Log on as a service" right is restricted by policy to '
            f"{', '.join(output.service_logon) or 'nobody'}: neither {account.username} nor "
            "NT SERVICE\\ALL SERVICES, so the sensor service cannot start."
        )
        fixes.append(
            f'Add {account.username} and NT SERVICE\\ALL SERVICES to "Log on as a service" in the GPO '
            f"that sets it for {sensor} (gpresult /h on {sensor} names it)"
        )
    status = Status.PROBLEM if problems else Status.UNKNOWN if unknown else Status.OK
    detail = " ".join([*problems, *unknown]) or (
        f"{sensor} can use {account.username} (Test-ADServiceAccount) and may run services as it."
    )
    return Check(name, status, detail, "; ".join(fixes) if status is not Status.OK else "")


def shown_generation(output: GmsaHostOutput) -> Generation:
    """What the host shows, as `SensorResult.generation`: the classic service, else the unified process."""
    if output.classic_sensor:
        return "2"
    return "3" if output.unified_sensor else "unknown"


def _plan(target: SensorTarget, account: AccountConfig, timeout: float) -> ScriptPlan | Check:
    """What running the host script on `target` needs, or the check that says why it cannot run."""
    try:
        password = target.read_password()
    except ConfigError as error:
        return Check(f"host:{target.name}", Status.UNKNOWN, "; ".join(error.problems))
    script = GMSA_HOST.render(GmsaHostParams(identity=account.username.removesuffix("$")))
    return ScriptPlan(target, password, script, timeout)


def _read(name: str, run: ScriptRun) -> GmsaHostOutput | Check:
    """The host script's output, or the check that says why there is none."""
    try:
        if isinstance(run, Failure):
            raise RemoteFailure(run.kind, run.detail)
        if run.exit_code != 0:
            raise RemoteFailure(FailureKind.SCRIPT_ERROR, run.stderr or f"exit code {run.exit_code}")
        try:
            return GmsaHostOutput.model_validate_json(run.stdout.strip())
        except ValidationError:
            raise RemoteFailure(
                FailureKind.SCRIPT_ERROR, "the host check returned unexpected output"
            ) from None
    except RemoteFailure as failure:
        return Check(
            f"host:{name}",
            Status.UNKNOWN,
            f"{name} could not be checked over WinRM: {failure.detail}",
            unreachable=failure.kind in _UNREACHABLE,
        )


def probe_hosts(
    settings: Settings, account: AccountConfig, sensors: Sequence[SensorConfig], scripts: ScriptRunner
) -> dict[str, GmsaHostOutput | Check]:
    """Sensor name -> what its host showed, for each sensor that WinRM is configured for (the others are
    skipped: the host checks are optional). `scripts` runs them (the bot's check workers)."""
    targets = []
    for sensor in sensors:
        try:
            targets.append(resolve_target(settings, sensor))
        except ConfigError:
            continue
    timeout = settings.sensor_checks.host_timeout
    planned = [_plan(t, account, timeout) for t in targets]
    probes: dict[str, GmsaHostOutput | Check] = {
        t.name: plan for t, plan in zip(targets, planned, strict=True) if isinstance(plan, Check)
    }
    plans = [plan for plan in planned if isinstance(plan, ScriptPlan)]
    probes |= {name: _read(name, run) for name, run in scripts.run_scripts(plans)}
    return {t.name: probes[t.name] for t in targets}


def host_checks(
    account: AccountConfig,
    probes: Mapping[str, GmsaHostOutput | Check],
    sensors: Sequence[str],
    gmsa_sid: str | None,
) -> tuple[Check, ...]:
    """The host check of each of `sensors` that was probed."""
    return tuple(
        probe if isinstance(probe, Check) else judge_host(name, account, gmsa_sid, probe)
        for name in sensors
        if (probe := probes.get(name)) is not None
    )
