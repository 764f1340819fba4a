"""What the monitor's jobs work with: settings, the notifier, the change path's store/audit/guard, state."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from bot.audit import AuditAction, AuditEvent, AuditOutcome, record_or_log
from bot.change import PasswordChanges
from bot.config import Settings
from bot.directory.lockout import now_utc
from bot.graph import GraphHealthSource, HealthIssue
from bot.monitor.notify import Notifier
from bot.monitor.state import MonitorState

MONITOR_ACTOR = "atp-bot:monitor"


class HealthSource(Protocol):
    """Open health issues about the directory service account (Defender for Identity via Graph)."""

    def credential_issues(self) -> list[HealthIssue]:
        """Raise `bot.graph.client.GraphError` when the source cannot answer."""
        ...


@dataclass
class MonitorRuntime:
    settings: Settings
    notifier: Notifier
    changes: PasswordChanges
    state: MonitorState
    health: HealthSource | None = None
    clock: Callable[[], datetime] = now_utc
    actor: str = MONITOR_ACTOR

    @classmethod
    def create(
        cls,
        settings: Settings,
        notifier: Notifier,
        changes: PasswordChanges,
        *,
        health: HealthSource | None = None,
        clock: Callable[[], datetime] = now_utc,
    ) -> MonitorRuntime:
        """The runtime for `atp-bot run`; the Graph source is built from `[graph]` when enabled."""
        if health is None and settings.graph.enabled:
            health = GraphHealthSource(settings.graph)
        return cls(
            settings, notifier, changes, MonitorState.for_settings(settings, changes.state_dir), health, clock
        )

    def audit(
        self, action: AuditAction, account: str | None, outcome: AuditOutcome, reason: str, detail: str
    ) -> None:
        """Audit after the fact; an audit outage is logged loudly but never stops the monitor."""
        event = AuditEvent(
            actor=self.actor, action=action, account=account, outcome=outcome, reason=reason, detail=detail
        )
        record_or_log(self.changes.audit, event)
