"""The sensors' own health in the monitor cycle, beside the account's credential incidents.

With `[graph] discover_sensors`, each cycle reads what Defender for Identity says of every sensor (Graph,
cached) and alerts a failed deployment (`startFailure`, `disconnected`, `unreachable`, `updateFailed`,
`notConfigured`) or a high or medium health problem (`notHealthyHigh`, `notHealthyMedium`); `outdated`
and `notHealthyLow` only show in `atp-bot sensors`. A sensor Graph knows as unified (3.x) whose host
answers over WinRM without its `SenseIdentity` process gets that problem, never "service not installed".
Each problem of a sensor is alerted once; when a sensor that was alerted has none left, one recovery
message follows. A sensor's host that did not answer keeps its host problem as it was (its
unreachability is reported on its own).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection

from bot.audit import AuditAction, AuditOutcome
from bot.fleet import FleetMember, generation_of, host_view
from bot.graph import GraphSensor
from bot.monitor.context import MonitorContext
from bot.monitor.delivery import SENSOR_HEALTH
from bot.monitor.memory import MonitorMemory
from bot.monitor.models import SensorHealthNotice
from bot.sensors import SensorResult

log = logging.getLogger(__name__)

ALERTING_DEPLOYMENT = ("startFailure", "disconnected", "unreachable", "updateFailed", "notConfigured")
ALERTING_HEALTH = ("notHealthyHigh", "notHealthyMedium")
GRAPH_FIELDS = ("deploymentStatus ", "healthStatus ")  # how a Graph problem's text starts


@dataclass(frozen=True)
class SensorHealth:
    """One Graph sensor's problems this cycle."""

    sensor: str
    account_id: str | None
    graph: tuple[str, ...]
    host: tuple[str, ...] | None  # None: its host was to be checked but did not answer

    def current(self, alerted: set[str]) -> tuple[str, ...]:
        """The problems now; with no answer from the host, its problems stay those already alerted."""
        if self.host is not None:
            return (*self.graph, *self.host)
        kept = sorted(p for p in alerted if not p.startswith(GRAPH_FIELDS))
        return (*self.graph, *kept)


def graph_alerts(sensor: GraphSensor) -> tuple[str, ...]:
    """The alerting part of what Graph says, in Graph's spelling, e.g. "deploymentStatus startFailure"."""
    found = []
    if sensor.deployment_status in ALERTING_DEPLOYMENT:
        found.append(f"deploymentStatus {sensor.deployment_status}")
    if sensor.health_status in ALERTING_HEALTH:
        found.append(f"healthStatus {sensor.health_status}")
    return tuple(found)


def _host_problems(graph: GraphSensor, result: SensorResult | None) -> tuple[str, ...] | None:
    """A unified sensor's missing process (the classic sensor's host problems are the incident's)."""
    if result is None or generation_of(graph.version) != "3":
        return ()
    if not result.reachable:
        return None
    return host_view(result, graph).problems


def fleet_health(members: Sequence[FleetMember], results: Mapping[str, SensorResult]) -> list[SensorHealth]:
    """Each Graph sensor's problems this cycle, from Graph and this cycle's WinRM results."""
    return [
        SensorHealth(
            sensor=member.name,
            account_id=member.config.account if member.config is not None else None,
            graph=graph_alerts(member.graph),
            host=_host_problems(member.graph, results.get(member.name)),
        )
        for member in members
        if member.graph is not None
    ]


def _notice(item: SensorHealth, alerted: set[str], now: datetime) -> SensorHealthNotice | None:
    current = item.current(alerted)
    new = tuple(p for p in current if p not in alerted)
    if new:
        return SensorHealthNotice(sensor=item.sensor, account_id=item.account_id, problems=new, at=now)
    if alerted and not current:
        problems = tuple(sorted(alerted))
        return SensorHealthNotice(
            sensor=item.sensor, account_id=item.account_id, problems=problems, recovered=True, at=now
        )
    return None


def watch_sensor_health(
    db: Connection, health: Sequence[SensorHealth], alerted: Mapping[str, set[str]], now: datetime
) -> list[SensorHealthNotice]:
    """Queue an alert for each new problem and a recovery for each sensor left without any; remember
    the problems alerted. A sensor Graph no longer lists is forgotten."""
    notices = []
    for item in health:
        before = alerted.get(item.sensor, set())
        notice = _notice(item, before, now)
        current = set(item.current(before))
        if current != before:
            MonitorMemory.save_sensor_problems(db, item.sensor, current)
        if notice is not None:
            MonitorMemory.enqueue(db, SENSOR_HEALTH, notice.model_dump_json())
            notices.append(notice)
    for gone in alerted.keys() - {item.sensor for item in health}:
        MonitorMemory.save_sensor_problems(db, gone, set())
    return notices


def audit_sensor_health(ctx: MonitorContext, notices: Sequence[SensorHealthNotice]) -> None:
    """An audit row and a log line for each sensor health alert and recovery."""
    for notice in notices:
        detail = f"sensor {notice.sensor}: {'; '.join(notice.problems)}"
        outcome = AuditOutcome.OK if notice.recovered else AuditOutcome.FAILED
        reason = "sensor_healthy" if notice.recovered else "sensor_unhealthy"
        ctx.audit(AuditAction.ALERT, notice.account_id, outcome, reason, detail)
        log.log(logging.INFO if notice.recovered else logging.WARNING, "%s: %s", reason, detail)
