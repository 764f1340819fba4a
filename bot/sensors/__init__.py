"""Sensors over WinRM: targets, the PowerShell templates (ps1/), the runner, the fan-out, shared checks."""

from bot.sensors.checks import SensorChecker, check_sensors, iter_check_results, not_checked, start_service
from bot.sensors.host_scripts import ScriptPlan, ScriptRun, ScriptRunner, ThreadScripts
from bot.sensors.results import NOT_INSTALLED, Failure, LogPosition, SensorResult, ServiceStartResult
from bot.sensors.shared_checks import SharedChecks
from bot.sensors.targets import SensorTarget, resolve_targets
from bot.sensors.workers import CheckWorkers

__all__ = [
    "NOT_INSTALLED",
    "CheckWorkers",
    "Failure",
    "LogPosition",
    "ScriptPlan",
    "ScriptRun",
    "ScriptRunner",
    "SensorChecker",
    "SensorResult",
    "SensorTarget",
    "ServiceStartResult",
    "SharedChecks",
    "ThreadScripts",
    "check_sensors",
    "iter_check_results",
    "not_checked",
    "resolve_targets",
    "start_service",
]
