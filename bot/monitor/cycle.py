"""The credential-error monitor: one check cycle over every sensor (and the optional Graph source).

Each cycle scans only what the sensors appended to their error logs since the saved positions, and
reads the service states. Per account, new credential errors or stopped services open an incident
(one alert) or grow the open one (the alert is updated, never re-posted); a cycle in which every sensor
of the account answered clean closes it. Each sensor is checked once per cycle and appears in one
incident: a sensor that names no account is its account's when only one is configured, and otherwise
goes to the incident of the sensors that name no account (not to one identical alert per account).
A sensor that cannot be reached is reported once after `scheduler.unreachable_after` failed cycles in a
row, and once more when it answers again.

With `[graph] discover_sensors`, the sensors checked are those `atp-bot check` checks (`[[sensors]]` and,
with `[winrm] endpoint_template`, every Graph sensor), and each sensor's own health as Graph reports it
is alerted per sensor (bot.monitor.sensor_health), and an account that becomes removable
(bot.monitor.dsa_retirement). A sensor Graph knows as unified (3.x) never counts a missing AATP service
in an incident. Defender for Identity's credential health issues are the DSA's, whichever sensors they
name: one alert per issue (bot.monitor.credential_issue), never in an incident.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import Connection

from bot.audit import AuditAction, AuditOutcome
from bot.config import ConfigError, Settings
from bot.fleet import checked_fleet, generation_of, merge_fleet
from bot.gmsa import gmsa_alert_verdicts
from bot.graph import GraphError, HealthIssue
from bot.monitor.context import MonitorContext
from bot.monitor.credential_issue import (
    audit_credential_issues,
    deliver_credential_issues,
    watch_credential_issues,
)
from bot.monitor.delivery import REACHABLE, UNREACHABLE, deliver_pending
from bot.monitor.dsa_retirement import audit_dsa_removable, watch_dsa_retirement
from bot.monitor.memory import MonitorMemory, Reachability, StoredIncident
from bot.monitor.models import Incident, ReachabilityNotice, SensorHealthNotice, SensorIssue, ServiceState
from bot.monitor.portal_watch import expected_errors, waiting_for_portal
from bot.monitor.render import incident_subject
from bot.monitor.sensor_health import audit_sensor_health, fleet_health, watch_sensor_health
from bot.sensors import SensorResult, not_checked

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AccountObservation:
    """What one cycle saw for one account's sensors."""

    issues: dict[str, SensorIssue]  # sensors with new credential errors or services not running
    clean: frozenset[str]  # sensors that answered without a problem
    all_answered: bool

    @property
    def has_problems(self) -> bool:
        return bool(self.issues)


@dataclass(frozen=True)
class CycleResult:
    results: tuple[SensorResult, ...]
    opened: tuple[str | None, ...] = ()  # account ids (None: the sensors that name no account)
    updated: tuple[str | None, ...] = ()
    closed: tuple[str | None, ...] = ()
    notices: tuple[ReachabilityNotice, ...] = ()
    delivered: bool = True  # False: something waits for the notifier
    health_error: str | None = None
    sensor_health: tuple[SensorHealthNotice, ...] = ()
    fleet_error: str | None = None  # why Graph's sensor list could not be read this cycle


def sensor_issue(result: SensorResult, *, unified: bool = False) -> SensorIssue | None:
    """The sensor's part of an incident from this cycle's check; None when it has nothing to report.
    `unified`: Graph knows it as a unified sensor, whatever its host shows."""
    errors = result.credential_errors
    stopped = tuple(ServiceState(name=s.name, state=s.state) for s in result.services if not s.running)
    if unified or result.generation == "3":
        stopped = ()  # the unified sensor has no AATP service: nothing of its own is "not installed"
    if not stopped and not (errors and errors.count):
        return None
    return SensorIssue(
        sensor=result.name,
        credential_errors=errors.count if errors else 0,
        first_error=errors.first if errors and errors.count else None,
        last_error=errors.last if errors and errors.count else None,
        sample=errors.sample if errors and errors.count else None,
        stopped_services=stopped,
        reason=errors.reason if errors else "password",
    )


def observe(
    sensor_names: Sequence[str],
    results: Mapping[str, SensorResult],
    unified: frozenset[str] = frozenset(),
) -> AccountObservation:
    issues, clean, answered = {}, set(), True
    for name in sensor_names:
        result = results.get(name)
        if result is None or not result.reachable:
            answered = False
            continue
        issue = sensor_issue(result, unified=name in unified)
        if issue is None:
            clean.add(name)
        else:
            issues[name] = issue
    return AccountObservation(issues, frozenset(clean), answered)


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    return min(x for x in (a, b) if x is not None) if a or b else None


def _latest(a: datetime | None, b: datetime | None) -> datetime | None:
    return max(x for x in (a, b) if x is not None) if a or b else None


def _merge(old: SensorIssue, new: SensorIssue) -> SensorIssue:
    return SensorIssue(
        sensor=old.sensor,
        credential_errors=old.credential_errors + new.credential_errors,
        first_error=_earliest(old.first_error, new.first_error),
        last_error=_latest(old.last_error, new.last_error),
        sample=new.sample or old.sample,
        stopped_services=new.stopped_services,
        reason=new.reason if new.credential_errors else old.reason,
    )


def next_incident(
    account_id: str | None,
    current: Incident | None,
    seen: AccountObservation,
    now: datetime,
    order: Sequence[str],
) -> Incident | None:
    """The account's incident after this cycle (pure). `current` may be closed but not yet delivered."""
    if current is None:
        if not seen.has_problems:
            return None
        return Incident(
            id=secrets.token_hex(6),
            account_id=account_id,
            opened_at=now,
            updated_at=now,
            sensors=tuple(seen.issues[name] for name in order if name in seen.issues),
        )
    if current.closed and not seen.has_problems:
        return current
    by_sensor = {s.sensor: s for s in current.sensors}
    for name, issue in seen.issues.items():
        by_sensor[name] = _merge(by_sensor[name], issue) if name in by_sensor else issue
    for name in seen.clean:
        if name in by_sensor and by_sensor[name].stopped_services:
            by_sensor[name] = by_sensor[name].model_copy(update={"stopped_services": ()})
    sensors = tuple(by_sensor[name] for name in order if name in by_sensor)
    sensors += tuple(s for name, s in by_sensor.items() if name not in order)  # sensors removed from config
    clean_now = seen.all_answered and not seen.has_problems
    closed_at = now if clean_now else None
    candidate = current.model_copy(update={"sensors": sensors, "closed_at": closed_at})
    if candidate == current:
        return current
    return candidate.model_copy(update={"updated_at": now})


def alert_groups(settings: Settings, stored: Iterable[str | None] = ()) -> dict[str | None, list[str]]:
    """The sensors of each incident, in configuration order, each sensor in exactly one.

    A sensor that names no account belongs to the only account, or, with several, to the incident of
    the sensors that name no account (key None); that key also stays while `stored` has its incident,
    so that it can close once its sensors were given accounts.
    """
    accounts = [a.id for a in settings.accounts]
    shared = None if len(accounts) > 1 else accounts[0] if accounts else None
    groups: dict[str | None, list[str]] = {account: [] for account in accounts}
    for sensor in settings.sensors:
        groups.setdefault(sensor.account or shared, []).append(sensor.name)
    if None in stored:
        groups.setdefault(None, [])
    return groups


def _track_reachability(
    db: Connection,
    ctx: MonitorContext,
    results: Sequence[SensorResult],
    known: Mapping[str, Reachability],
    now: datetime,
) -> list[ReachabilityNotice]:
    notices = []
    threshold = ctx.settings.scheduler.unreachable_after
    for result in results:
        old = known.get(result.name, Reachability(result.name))
        if result.reachable:
            if old.reported:
                notices.append(
                    ReachabilityNotice(
                        sensor=result.name,
                        account_id=result.account,
                        reachable=True,
                        failures=old.failures,
                        since=old.since or now,
                        at=now,
                    )
                )
            if old.failures or old.reported:
                MonitorMemory.save_reachability(db, Reachability(result.name))
            continue
        assert result.failure is not None
        detail = f"{result.failure.kind}: {result.failure.detail}"
        failures, since = old.failures + 1, old.since or now
        report = failures >= threshold and not old.reported
        if report:
            notices.append(
                ReachabilityNotice(
                    sensor=result.name,
                    account_id=result.account,
                    reachable=False,
                    failures=failures,
                    since=since,
                    at=now,
                    detail=detail,
                    access_denied=result.access_denied,
                )
            )
        MonitorMemory.save_reachability(
            db, Reachability(result.name, failures, since, detail, old.reported or report)
        )
    for notice in notices:
        MonitorMemory.enqueue(db, REACHABLE if notice.reachable else UNREACHABLE, notice.model_dump_json())
    return notices


def _read_health(ctx: MonitorContext) -> tuple[list[HealthIssue] | None, str | None]:
    if ctx.health is None:
        return [], None
    try:
        return ctx.health.credential_issues(), None
    except GraphError as exc:
        log.warning("graph: health issues unavailable this cycle: %s", exc)
        return None, str(exc)


def _describe(incident: Incident) -> str:
    parts = [
        f"{s.sensor}: {s.credential_errors} credential error(s)"
        + "".join(f", {svc.name} {svc.state}" for svc in s.stopped_services)
        for s in incident.sensors
    ]
    return f"incident {incident.id}: " + "; ".join(parts)


# One cycle at a time (in the process, and across replicas sharing the state): two at once would both
# read the same log positions and count the same errors twice. A second caller waits, then runs a fresh
# cycle.
_one_cycle = threading.Lock()


def run_monitor_cycle(ctx: MonitorContext) -> CycleResult:
    """One cycle: check, update incidents and reachability (one transaction), audit, then deliver."""
    with ctx.memory.exclusive("cycle", _one_cycle):
        return _cycle(ctx)


def _cycle(ctx: MonitorContext) -> CycleResult:
    graph, fleet_error = ctx.fleet()
    members = merge_fleet(ctx.settings, graph)
    settings, state = checked_fleet(ctx.settings, members), ctx.memory
    unified = frozenset(m.name for m in members if m.graph and generation_of(m.graph.version) == "3")
    names = [s.name for s in settings.sensors]
    now = ctx.clock()
    # A sensor without a saved position is scanned over the default window before the monitor's own clock.
    since = now - timedelta(minutes=settings.sensor_checks.default_window_minutes)
    try:
        results = (
            ctx.changes.checker(settings, names, since=since, positions=state.positions()) if names else []
        )
    except ConfigError as exc:  # e.g. the WinRM password cannot be read: reported like unreachable sensors
        problem = "; ".join(exc.problems)
        log.error("monitor: the sensors cannot be checked: %s", problem)
        results = not_checked(settings, names, problem)
    by_name = {r.name: r for r in results}
    health_list, health_error = _read_health(ctx)
    gmsa_verdicts = gmsa_alert_verdicts(settings, results, ctx.changes.fleet, ctx.changes.scripts)
    stored, reachability, alerted = state.incidents(), state.reachability(), state.sensor_problems()
    waiting = waiting_for_portal(ctx)
    sensor_health = fleet_health(members, by_name) if fleet_error is None else None
    opened: list[Incident] = []
    updated: list[Incident] = []
    closed: list[Incident] = []
    with state.transaction() as db:
        for result in results:
            if result.position is not None:
                MonitorMemory.save_position(db, result.name, result.position)
        notices = _track_reachability(db, ctx, results, reachability, now)
        issue_alerts = watch_credential_issues(db, settings.accounts, health_list, now)
        health_notices = (
            watch_sensor_health(db, sensor_health, alerted, now) if sensor_health is not None else []
        )
        removable = watch_dsa_retirement(db, ctx.settings, graph, fleet_error, now)
        for group, order in alert_groups(settings, stored).items():
            seen = observe(order, by_name, unified)
            if group in waiting:  # the new password is not in MDI yet: credential errors are expected
                seen = replace(seen, issues=expected_errors(ctx, group, seen.issues, seen.all_answered))
            previous = stored.get(group)
            current = previous.incident if previous else None
            incident = next_incident(group, current, seen, now, order)
            if incident is not None and not incident.closed and group in gmsa_verdicts:
                incident = incident.model_copy(update={"gmsa_verdict": gmsa_verdicts[group]})
            if incident is None or incident == current:
                continue
            if current is None:
                opened.append(incident)
            elif incident.closed and not current.closed:
                closed.append(incident)
            else:
                updated.append(incident)
            MonitorMemory.save_incident(
                db, StoredIncident(incident, previous.ref if previous else None, False)
            )
    _audit_cycle(ctx, opened, closed, notices)
    audit_sensor_health(ctx, health_notices)
    audit_credential_issues(ctx, issue_alerts)
    audit_dsa_removable(ctx, removable)
    delivered = deliver_pending(ctx.notifier, state) & deliver_credential_issues(ctx.notifier, state)
    return CycleResult(
        results=tuple(results),
        opened=tuple(i.account_id for i in opened),
        updated=tuple(i.account_id for i in updated),
        closed=tuple(i.account_id for i in closed),
        notices=tuple(notices),
        delivered=delivered,
        health_error=health_error,
        sensor_health=tuple(health_notices),
        fleet_error=fleet_error,
    )


def _audit_cycle(
    ctx: MonitorContext,
    opened: Sequence[Incident],
    closed: Sequence[Incident],
    notices: Sequence[ReachabilityNotice],
) -> None:
    for incident in opened:
        detail = _describe(incident)
        ctx.audit(AuditAction.ALERT, incident.account_id, AuditOutcome.FAILED, "credential_incident", detail)
        log.warning("%s: %s", incident_subject(incident.account_id), detail)
    for incident in closed:
        ctx.audit(
            AuditAction.ALERT,
            incident.account_id,
            AuditOutcome.OK,
            "recovered",
            f"incident {incident.id} closed",
        )
        subject = incident_subject(incident.account_id)
        log.info("%s: incident %s closed: a full cycle was clean", subject, incident.id)
    for notice in notices:
        ctx.audit(
            AuditAction.ALERT,
            notice.account_id,
            AuditOutcome.OK if notice.reachable else AuditOutcome.FAILED,
            "sensor_reachable" if notice.reachable else "sensor_unreachable",
            f"sensor {notice.sensor}" + (f": {notice.detail}" if notice.detail else ""),
        )
