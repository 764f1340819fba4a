"""What the monitor's jobs work with: settings, notifier, the change path (store, audit, guard), memory."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from bot.audit import AuditAction, AuditEvent, AuditOutcome, record_or_log
from bot.change import PasswordChanges
from bot.config import Settings
from bot.directory.lockout import now_utc
from bot.graph import GraphHealthSource, GraphSensor, HealthIssue
from bot.monitor.memory import MonitorMemory
from bot.monitor.notify import Notifier

MONITOR_ACTOR = "atp-bot:monitor"


class HealthSource(Protocol):
    """Open health issues about the directory service account (Defender for Identity via Graph)."""

    def credential_issues(self) -> list[HealthIssue]:
        """Raise `bot.graph.client.GraphError` when the source cannot answer."""
        ...


@dataclass
class MonitorContext:
    settings: Settings
    notifier: Notifier
    changes: PasswordChanges
    memory: MonitorMemory  # what the monitor remembers between cycles (bot.monitor.memory)
    health: HealthSource | None = None
    clock: Callable[[], datetime] = now_utc
    actor: str = MONITOR_ACTOR
    # Graph's sensor list as last read: a cycle in which Graph does not answer goes on with it, so that
    # a Graph outage neither drops the discovered sensors nor makes a unified sensor "not installed".
    graph_sensors: tuple[GraphSensor, ...] = ()

    def fleet(self) -> tuple[tuple[GraphSensor, ...], str | None]:
        """Graph's sensors (cached 60 s), or the last list read and why Graph could not be used now."""
        sensors, error = self.changes.fleet.sensors()
        if error is None:
            self.graph_sensors = sensors
        return self.graph_sensors, error

    @classmethod
    def create(
        cls,
        settings: Settings,
        notifier: Notifier,
        changes: PasswordChanges,
        *,
        health: HealthSource | None = None,
        clock: Callable[[], datetime] = now_utc,
    ) -> MonitorContext:
        """The runtime for `atp-bot run`; the Graph source is built from `[graph]` when enabled."""
        if health is None and settings.graph.enabled:
            health = GraphHealthSource(settings.graph)
        return cls(
            settings,
            notifier,
            changes,
            MonitorMemory.for_settings(settings, changes.state_dir),
            health,
            clock,
        )

    def audit(
        self, action: AuditAction, account: str | None, outcome: AuditOutcome, reason: str, detail: str
    ) -> None:
        """Audit after the fact; an audit outage is logged loudly but never stops the monitor."""
        event = AuditEvent(
            actor=self.actor, action=action, account=account, outcome=outcome, reason=reason, detail=detail
        )
        record_or_log(self.changes.audit, event)
