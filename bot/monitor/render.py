"""Plain-text views of the monitor's values, for logs and the CLI (Slack renders its own blocks)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from bot.change.portal import portal_instructions
from bot.fleet import REMOVAL_STEP
from bot.monitor.models import (
    AuditHeadNotice,
    CredentialIssueAlert,
    DriftNotice,
    DsaRemovableNotice,
    ExpiryWarning,
    Incident,
    LookupSuspensionNotice,
    PortalNotice,
    ReachabilityNotice,
    RecheckReport,
    SensorHealthNotice,
    SensorIssue,
)
from bot.sensors.credential_signatures import describe


def _at(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC" if moment else "unknown"


def incident_subject(account_id: str | None) -> str:
    """Whose incident it is: an account's, or that of the sensors that name no account."""
    return f"account {account_id}" if account_id else "sensors that name no account"


def _sensor_line(issue: SensorIssue) -> str:
    parts = []
    if issue.credential_errors:
        parts.append(f"{describe(issue.credential_errors, issue.reason)} since {_at(issue.first_error)}")
    parts += [f"service {s.name} is {s.state}" for s in issue.stopped_services]
    return f"  {issue.sensor}: {'; '.join(parts) or 'no current problem'}"


def _when_found(issue: SensorIssue, at: Callable[[datetime | None], str]) -> str:
    first, last = at(issue.first_error), at(issue.last_error or issue.first_error)
    return f"at {first}" if first == last else f"from {first} to {last}"


def incident_story(
    incident: Incident, name: Callable[[str], str] = str, at: Callable[[datetime | None], str] = _at
) -> str:
    """A closed incident in one line: per sensor what was found, how many and when, then since when all
    is clean. It is the recovery message, and the only message of an incident that closed before its
    alert could be posted (a chat outage), so it never leans on the alert. `name` and `at` format a
    sensor name and a time for the face."""
    found = [
        f"{describe(s.credential_errors, s.reason)} on {name(s.sensor)} {_when_found(s, at)}"
        for s in incident.sensors
        if s.credential_errors
    ]
    found += [
        f"a service not running on {name(s.sensor)}" for s in incident.sensors if not s.credential_errors
    ]
    told = ", ".join(found) or f"problems first seen {at(incident.first_seen)}"
    return f"{told}; clean since {at(incident.closed_at)}"


def render_incident(incident: Incident) -> str:
    if incident.closed:
        return (
            f"RESOLVED: {incident_subject(incident.account_id)}: {incident_story(incident)} "
            f"(incident {incident.id})."
        )
    problem = (
        "sensors report credential problems"
        if incident.about_credentials
        else ("sensor services are not running, no credential error seen")
    )
    lines = [
        f"ALERT: {incident_subject(incident.account_id)}: {problem} "
        f"(incident {incident.id}, first seen {_at(incident.first_seen)})"
    ]
    lines += [_sensor_line(s) for s in incident.sensors]
    if incident.sample:
        lines.append(f"  sample: {incident.sample}")
    account = incident.account_id or "ID (the account these sensors use)"
    if incident.gmsa_verdict:
        lines.append(f"  gMSA: {incident.gmsa_verdict}")
        lines.append(f"  fix: atp-bot gmsa check --account {account}")
    elif not incident.about_credentials:
        lines.append("  fix: start the service on the sensor (the alert's Start service button in Slack)")
    else:
        lines.append(f"  fix: atp-bot set-password --account {account}")
    return "\n".join(lines)


def render_reachability(notice: ReachabilityNotice) -> str:
    if notice.reachable:
        return f"sensor {notice.sensor} can be checked again (it could not since {_at(notice.since)})."
    if notice.access_denied:
        return (
            f"sensor {notice.sensor} refuses atp-bot's WinRM credential: {notice.failures} checks in a row "
            f"since {_at(notice.since)}: {notice.detail or 'no detail'}"
        )
    return (
        f"sensor {notice.sensor} cannot be checked: {notice.failures} checks in a row failed since "
        f"{_at(notice.since)}: {notice.detail or 'no detail'}"
    )


def render_sensor_health(notice: SensorHealthNotice) -> str:
    problems = "; ".join(notice.problems)
    if notice.recovered:
        return f"sensor {notice.sensor} is healthy again at {_at(notice.at)} (was: {problems})."
    return f"sensor {notice.sensor} needs attention at {_at(notice.at)}: {problems}"


def render_dsa_removable(notice: DsaRemovableNotice) -> str:
    unified = ", ".join(notice.unified_sensors)
    return (
        f"directory service account {notice.account_id} is no longer used at {_at(notice.at)}: every sensor "
        f"of {', '.join(notice.domains) or 'its domains'} is unified ({unified}). {REMOVAL_STEP}"
    )


def render_recheck(report: RecheckReport) -> str:
    verdict = "all healthy" if report.healthy else "needs attention"
    lines = [
        f"Re-check of account {report.account_id}, {report.delay_minutes} min after the change: {verdict}"
    ]
    for sensor in report.sensors:
        state = "ok" if sensor.healthy else "; ".join(sensor.problems) or sensor.error or "unreachable"
        lines.append(f"  {sensor.name}: {state}")
    return "\n".join(lines)


def render_portal(notice: PortalNotice) -> str:
    """E.g. "Defender for Identity is using the new password of tier0: confirmed at 14:32 UTC (…)"."""
    if notice.confirmed_at is not None:
        return (
            f"Defender for Identity is using the new password of {notice.account_id}: confirmed at "
            f"{notice.confirmed_at:%H:%M} UTC ({notice.evidence}). The follow-up checks start now."
        )
    return (
        f"Reminder: the new password of {notice.account_id} is waiting for the portal step since "
        f"{notice.saved_at:%H:%M} UTC: {portal_instructions(notice.username)}"
    )


def render_expiry_warning(warning: ExpiryWarning) -> str:
    if warning.days_left < 0:
        return f"account {warning.account_id}: the password EXPIRED at {_at(warning.expires_at)}."
    return (
        f"account {warning.account_id}: the password expires in {warning.days_left} day(s), at "
        f"{_at(warning.expires_at)}. Change it in time: atp-bot set-password --account {warning.account_id}"
    )


def render_audit_head(notice: AuditHeadNotice) -> str:
    anchored = f"; {notice.anchor_problem}" if notice.anchor_problem else ""
    if not notice.intact:
        return f"audit trail NOT intact at {_at(notice.verified_at)}: {notice.problem}{anchored}"
    keyed = "keyed" if notice.keyed else "UNKEYED (run atp-bot audit rekey)"
    return (
        f"audit trail intact at {_at(notice.verified_at)}: {notice.rows} rows, {keyed}, "
        f"head {notice.head or 'none'} (check later with: atp-bot audit verify --anchor ID:HASH){anchored}"
    )


def render_lookup_suspension(notice: LookupSuspensionNotice) -> str:
    return (
        f"Lookup account {notice.lookup_account} (accounts {', '.join(notice.accounts)}): the lookup "
        f"account's password is wrong: {notice.dc} refused it ({notice.detail}). atp-bot binds with it no "
        "more, and reads no drift, expiry or lockout state with it, until its password source "
        f"(lookup_password_env/lookup_password_file) changes or until {notice.until:%Y-%m-%d %H:%M} UTC."
    )


def render_drift(notice: DriftNotice) -> str:
    if notice.recovered:
        return f"Account {notice.account_id}: back in sync with AD. " + " ".join(notice.findings)
    return f"Account {notice.account_id}: " + " ".join(notice.findings)


# Why unified (3.x) sensors, which use no directory service account, report the DSA's credential issue.
UNIFIED_SENSORS_REASON = (
    "Defender for Identity checks the directory service account on every sensor, unified 3.x sensors "
    "included, while the workspace has one: this may name unified sensors, but it is the DSA's password "
    "that is wrong."
)


def render_credential_issue(alert: CredentialIssueAlert) -> str:
    """The credential health issue's alert, or (closed) the line that says Defender for Identity closed it."""
    if alert.closed:
        return f"Defender for Identity closed '{alert.display_name}' (seen {_at(alert.closed_at)})."
    names = ", ".join((*alert.accounts, *alert.gmsa_accounts)) or "none of atp-bot's"
    where = ", ".join(alert.domains) or "no domain named"
    lines = [
        f"ALERT: Defender for Identity health issue '{alert.display_name}' ({where}): "
        f"directory service account(s) {names}. {UNIFIED_SENSORS_REASON}"
    ]
    lines += [f"  fix: atp-bot set-password --account {a}" for a in alert.accounts]
    lines += [
        f"  gMSA (its password cannot be typed): atp-bot gmsa check --account {a}"
        for a in alert.gmsa_accounts
    ]
    return "\n".join(lines)
