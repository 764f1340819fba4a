"""The notifier: how the monitor reaches the operator. Slack implements it; the core never renders.

Contract for implementations: raise `NotifierError` when a message cannot be delivered (an outage, a
rate limit). The monitor then keeps the alert pending and delivers it on a later cycle; any other
exception is a bug and propagates.
"""

from __future__ import annotations

import logging
from typing import Protocol

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
from bot.monitor.render import (
    render_audit_head,
    render_credential_issue,
    render_drift,
    render_dsa_removable,
    render_expiry_warning,
    render_incident,
    render_lookup_suspension,
    render_portal,
    render_reachability,
    render_recheck,
    render_sensor_health,
)

log = logging.getLogger(__name__)


class NotifierError(Exception):
    """A message could not be delivered now; the monitor retries on its next cycle."""


class Notifier(Protocol):
    def post_incident(self, incident: Incident) -> MessageRef:
        """Post a new alert; the returned reference is persisted to update and close it later. An incident
        already closed (over before it could be posted) is posted once, telling its whole story, and
        never closed afterwards."""
        ...

    def update_incident(self, ref: MessageRef, incident: Incident) -> None:
        """Replace the alert's content (more errors, more sensors, a service state change)."""
        ...

    def close_incident(self, ref: MessageRef, incident: Incident) -> None:
        """Mark the alert resolved and post the recovery message in its thread."""
        ...

    def post_credential_issue(self, alert: CredentialIssueAlert) -> MessageRef:
        """A Defender for Identity credential health issue: one alert per issue, with *Update password* for
        each account it names (also once for one already closed, then never closed afterwards)."""
        ...

    def close_credential_issue(self, ref: MessageRef, alert: CredentialIssueAlert) -> None:
        """The issue is no longer open: say so in the alert's thread."""
        ...

    def post_unreachable(self, notice: ReachabilityNotice) -> None:
        """A sensor could not be reached for `notice.failures` cycles in a row (sent once)."""
        ...

    def post_reachable(self, notice: ReachabilityNotice) -> None:
        """A sensor reported unreachable answers again (sent once)."""
        ...

    def post_sensor_health(self, notice: SensorHealthNotice) -> None:
        """A sensor's own health problems (Graph, a unified sensor's process), or their recovery (each
        sent once)."""
        ...

    def post_recheck(self, thread_ref: MessageRef, report: RecheckReport) -> None:
        """The result of a scheduled re-check, in the thread of the change it follows."""
        ...

    def post_health_issue(self, thread_ref: MessageRef, notice: HealthIssueNotice) -> None:
        """What became of a DSA health issue after a change, in the thread of the change."""
        ...

    def post_portal(self, thread_ref: MessageRef | None, notice: PortalNotice) -> None:
        """A saved password's portal step: the one reminder, or MDI seen using it (in the change's thread,
        or the channel when the change has none)."""
        ...

    def post_expiry_warning(self, warning: ExpiryWarning) -> None:
        """The account's password expires in `warning.days_left` days (once per threshold)."""
        ...

    def post_audit_head(self, notice: AuditHeadNotice) -> None:
        """The daily verified head of the audit chain (`[audit] announce_head`), or why it did not verify."""
        ...

    def post_drift(self, notice: DriftNotice) -> None:
        """The account's password drifted in AD (once per event), or is in sync again."""
        ...

    def post_lookup_suspension(self, notice: LookupSuspensionNotice) -> None:
        """A lookup account's password is wrong: its binds are suspended (once per suspension)."""
        ...

    def post_dsa_removable(self, notice: DsaRemovableNotice) -> None:
        """A directory service account is used by no sensor any more (once each time it becomes so)."""
        ...


class LogNotifier:
    """A notifier that writes plain text to the log: for running without Slack, and for the CLI."""

    def __init__(self, logger: logging.Logger = log) -> None:
        self._log = logger
        self._posted = 0

    def post_incident(self, incident: Incident) -> MessageRef:
        self._posted += 1
        self._log.warning("%s", render_incident(incident))
        return MessageRef(channel="log", ts=str(self._posted))

    def update_incident(self, ref: MessageRef, incident: Incident) -> None:
        self._log.warning("(update of alert %s) %s", ref.ts, render_incident(incident))

    def close_incident(self, ref: MessageRef, incident: Incident) -> None:
        self._log.info("(alert %s) %s", ref.ts, render_incident(incident))

    def post_credential_issue(self, alert: CredentialIssueAlert) -> MessageRef:
        self._posted += 1
        self._log.log(logging.INFO if alert.closed else logging.WARNING, "%s", render_credential_issue(alert))
        return MessageRef(channel="log", ts=str(self._posted))

    def close_credential_issue(self, ref: MessageRef, alert: CredentialIssueAlert) -> None:
        self._log.info("(alert %s) %s", ref.ts, render_credential_issue(alert))

    def post_unreachable(self, notice: ReachabilityNotice) -> None:
        self._log.warning("%s", render_reachability(notice))

    def post_reachable(self, notice: ReachabilityNotice) -> None:
        self._log.info("%s", render_reachability(notice))

    def post_sensor_health(self, notice: SensorHealthNotice) -> None:
        level = logging.INFO if notice.recovered else logging.WARNING
        self._log.log(level, "%s", render_sensor_health(notice))

    def post_recheck(self, thread_ref: MessageRef, report: RecheckReport) -> None:
        self._log.info("%s", render_recheck(report))

    def post_health_issue(self, thread_ref: MessageRef, notice: HealthIssueNotice) -> None:
        self._log.info("account %s: %s", notice.account_id, notice.text())

    def post_portal(self, thread_ref: MessageRef | None, notice: PortalNotice) -> None:
        self._log.log(logging.INFO if notice.confirmed_at else logging.WARNING, "%s", render_portal(notice))

    def post_expiry_warning(self, warning: ExpiryWarning) -> None:
        self._log.warning("%s", render_expiry_warning(warning))

    def post_audit_head(self, notice: AuditHeadNotice) -> None:
        self._log.log(logging.INFO if notice.intact else logging.ERROR, "%s", render_audit_head(notice))

    def post_drift(self, notice: DriftNotice) -> None:
        self._log.log(logging.INFO if notice.recovered else logging.WARNING, "%s", render_drift(notice))

    def post_lookup_suspension(self, notice: LookupSuspensionNotice) -> None:
        self._log.error("%s", render_lookup_suspension(notice))

    def post_dsa_removable(self, notice: DsaRemovableNotice) -> None:
        self._log.warning("%s", render_dsa_removable(notice))
