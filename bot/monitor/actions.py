"""The *Start service* action's core: start a sensor service, audit it, report the result.

Whoever calls it (Slack) has already checked that the actor may do this.
"""

from __future__ import annotations

from collections.abc import Sequence

from bot.audit import AuditAction, AuditEvent, AuditOutcome, AuditTrail, record_or_log
from bot.config import ConfigError, Settings
from bot.fleet import checked_fleet, merge_fleet
from bot.graph import GraphSensor
from bot.monitor.models import ServiceStartReport
from bot.sensors import start_service


def start_sensor_service(
    settings: Settings,
    audit: AuditTrail,
    sensor: str,
    service: str,
    actor: str,
    graph: Sequence[GraphSensor] = (),
) -> ServiceStartReport:
    """Start `service` on `sensor`, one of the sensors the monitor checks (`graph`: Graph's list, for
    those only `[winrm] endpoint_template` reaches). Never raises for peer or input problems; the report
    says what happened."""
    settings = checked_fleet(settings, merge_fleet(settings, graph))
    account = next((s.account for s in settings.sensors if s.name == sensor), None)
    before: str | None = None
    after: str | None = None
    reason: str | None
    try:
        result = start_service(settings, sensor, service)
    except ConfigError as exc:
        ok, outcome, reason, message = False, AuditOutcome.REFUSED, "bad_request", "; ".join(exc.problems)
    else:
        before, after = result.before, result.after
        if result.failure is not None:
            ok, outcome, reason = False, AuditOutcome.ERROR, str(result.failure.kind)
            message = f"Could not start {service} on {sensor}: {result.failure.detail}"
        elif result.running:
            ok, outcome, reason = True, AuditOutcome.OK, None
            message = f"{service} on {sensor} is Running (it was {result.before})."
        else:
            ok, outcome, reason = False, AuditOutcome.FAILED, "not_running"
            message = f"{service} on {sensor} is {result.after} after the start request" + (
                f": {result.error}" if result.error else "."
            )
    start = AuditEvent(
        actor=actor,
        action=AuditAction.START_SERVICE,
        account=account,
        outcome=outcome,
        reason=reason,
        detail=f"{sensor}: {message}",
    )
    record_or_log(audit, start)
    return ServiceStartReport(
        sensor=sensor, service=service, actor=actor, ok=ok, before=before, after=after, message=message
    )
