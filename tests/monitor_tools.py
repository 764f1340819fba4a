"""Helpers for the monitor, scheduler and Graph tests: a recording notifier, a settable clock, and a
runtime over the WinRM emulator, the embedded store and the audit trail in a temp state directory."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bot.change import open_changes
from bot.config import Settings, parse_settings
from bot.monitor.context import HealthSource, MonitorContext
from bot.monitor.models import (
    AuditHeadNotice,
    CredentialIssueAlert,
    DriftNotice,
    DsaRemovableNotice,
    ExpiryWarning,
    HealthIssueNotice,
    Incident,
    LookupSuspensionNotice,
    MessageRef,
    PortalNotice,
    ReachabilityNotice,
    RecheckReport,
    SensorHealthNotice,
)
from bot.monitor.notify import NotifierError
from bot.store.embedded import init_embedded_store, store_path
from lab.winrm.model import log_line
from lab.winrm.server import WinRMEmulator

WINRM_USER = "CONTOSO\\atp-checker"
WINRM_PASSWORD = "Canary-WinRM-Pa55-9d2e!"
CREDENTIAL_ERROR = "The supplied credential is invalid."


def day_edge_now() -> datetime:
    """Now; or, with ATP_TEST_UTC_TIME=HH:MM[:SS], today at that UTC time, so that CI runs the tests that
    reason about UTC days (marked `clock`) once more at a day's edge (23:59:30) whatever the hour."""
    now = datetime.now(UTC)
    wanted = os.environ.get("ATP_TEST_UTC_TIME")
    if not wanted:
        return now
    hour, minute, *second = (int(part) for part in wanted.split(":"))
    return now.replace(hour=hour, minute=minute, second=second[0] if second else 0, microsecond=0)


@dataclass
class Clock:
    now: datetime = field(default_factory=lambda: datetime(2026, 11, 25, 6, 0, tzinfo=UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


class RecordingNotifier:
    """Records every call; `failing = True` makes each call raise NotifierError (a Slack outage)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.failing = False
        self._count = 0

    def _record(self, name: str, value: Any) -> None:
        if self.failing:
            raise NotifierError("slack is down (test)")
        self.calls.append((name, value))

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    def of(self, name: str) -> list[Any]:
        return [value for called, value in self.calls if called == name]

    def post_incident(self, incident: Incident) -> MessageRef:
        self._record("post_incident", incident)
        self._count += 1
        return MessageRef(channel="C0ALERTS", ts=f"1764050000.{self._count:06d}")

    def update_incident(self, ref: MessageRef, incident: Incident) -> None:
        self._record("update_incident", (ref, incident))

    def close_incident(self, ref: MessageRef, incident: Incident) -> None:
        self._record("close_incident", (ref, incident))

    def post_credential_issue(self, alert: CredentialIssueAlert) -> MessageRef:
        self._record("post_credential_issue", alert)
        self._count += 1
        return MessageRef(channel="C0ALERTS", ts=f"1764050000.{self._count:06d}")

    def close_credential_issue(self, ref: MessageRef, alert: CredentialIssueAlert) -> None:
        self._record("close_credential_issue", (ref, alert))

    def post_unreachable(self, notice: ReachabilityNotice) -> None:
        self._record("post_unreachable", notice)

    def post_reachable(self, notice: ReachabilityNotice) -> None:
        self._record("post_reachable", notice)

    def post_health_issue(self, thread_ref: MessageRef, notice: HealthIssueNotice) -> None:
        self._record("post_health_issue", (thread_ref, notice))

    def post_recheck(self, thread_ref: MessageRef, report: RecheckReport) -> None:
        self._record("post_recheck", (thread_ref, report))

    def post_portal(self, thread_ref: MessageRef | None, notice: PortalNotice) -> None:
        self._record("post_portal", (thread_ref, notice))

    def post_expiry_warning(self, warning: ExpiryWarning) -> None:
        self._record("post_expiry_warning", warning)

    def post_audit_head(self, notice: AuditHeadNotice) -> None:
        self._record("post_audit_head", notice)

    def post_drift(self, notice: DriftNotice) -> None:
        self._record("post_drift", notice)

    def post_sensor_health(self, notice: SensorHealthNotice) -> None:
        self._record("post_sensor_health", notice)

    def post_lookup_suspension(self, notice: LookupSuspensionNotice) -> None:
        self._record("post_lookup_suspension", notice)

    def post_dsa_removable(self, notice: DsaRemovableNotice) -> None:
        self._record("post_dsa_removable", notice)


def toml_str(value: object) -> str:
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def monitor_settings(
    tmp_path: Path,
    emulator: WinRMEmulator | None,
    *,
    account: str = "",
    extra: str = "",
    winrm: str = "",
) -> Settings:
    """A configuration with one account (`svc`, no DC contacted unless `account` says so) and the
    emulator's hosts as its sensors; `winrm`: more lines of the `[winrm]` table."""
    account = account or (
        '[[accounts]]\nid = "svc"\nusername = "svc-atp@contoso.test"\n'
        'domain_controllers = ["ldaps://127.0.0.1:1"]\n'
    )
    endpoints = {name: emulator.endpoint(name) for name in emulator.hosts} if emulator else {}
    sensors = "".join(
        f'[[sensors]]\nname = "{name}"\nendpoint = "{endpoint}"\naccount = "svc"\n'
        for name, endpoint in endpoints.items()
    )
    return parse_settings(
        f"state_dir = {toml_str(tmp_path / 'state')}\n"
        + account
        + f'[winrm]\nusername = {toml_str(WINRM_USER)}\npassword_env = "ATP_BOT_TEST_WINRM"\n'
        + 'transport = "ntlm"\n'
        + winrm
        + sensors
        + extra
    )


def credential_errors(emulator: WinRMEmulator, host: str, clock: Clock, count: int) -> None:
    """`count` credential errors in the host's sensor error log, at the clock's time."""
    emulator.host(host).append_log(*[log_line(clock.now, f"[DirectoryServices] {CREDENTIAL_ERROR}")] * count)


def make_runtime(
    settings: Settings,
    notifier: RecordingNotifier,
    clock: Clock,
    health: HealthSource | None = None,
) -> MonitorContext:
    """The runtime `atp-bot run` would build (store initialised on first use)."""
    if not store_path(settings).exists():
        init_embedded_store(settings)
    changes = open_changes(settings)
    return MonitorContext.create(settings, notifier, changes, health=health, clock=clock)


def alert_rows(runtime: MonitorContext) -> list[tuple[str, str, str | None]]:
    """(outcome, reason, account) of the alert rows in the audit trail, oldest first."""
    rows = reversed(runtime.changes.audit.recent(limit=200))
    return [(r.outcome, r.reason or "", r.account) for r in rows if r.action == "alert"]
