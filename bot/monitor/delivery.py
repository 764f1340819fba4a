"""Sending what the monitor found through the notifier, without ever losing it.

Everything is persisted before it is sent. An incident stays `delivered = False` until the notifier took
its latest version; other notices wait in the outbox, in order. A `NotifierError` leaves the rest for the
next cycle.
"""

from __future__ import annotations

import logging
import threading

from bot.monitor.memory import MonitorMemory, OutboxItem, StoredIncident
from bot.monitor.models import (
    AuditHeadNotice,
    DriftNotice,
    DsaRemovableNotice,
    ExpiryWarning,
    HealthIssueNotice,
    LookupSuspensionNotice,
    PortalNotice,
    ReachabilityNotice,
    RecheckReport,
    SensorHealthNotice,
)
from bot.monitor.notify import Notifier, NotifierError
from bot.monitor.render import incident_subject

log = logging.getLogger(__name__)

UNREACHABLE, REACHABLE, RECHECK, EXPIRY = "unreachable", "reachable", "recheck", "expiry"
HEALTH_ISSUE = "health-issue"
AUDIT_HEAD = "audit-head"
DRIFT = "drift"
SENSOR_HEALTH = "sensor-health"
LOOKUP_SUSPENSION = "lookup-suspension"
DSA_REMOVABLE = "dsa-removable"
PORTAL = "portal"

# The monitor cycle, a re-check and the expiry check may deliver at the same time (scheduler threads,
# and replicas sharing the state); one sender at a time, so nothing is sent twice.
_sending = threading.RLock()


def _deliver_incident(notifier: Notifier, state: MonitorMemory, stored: StoredIncident) -> None:
    """Bring the face up to the incident's latest version. An incident that closed before its alert was
    ever posted is posted once, already over (the whole story in one message), and dropped: no alert
    to update and no recovery reply to a message that does not exist."""
    incident, ref = stored.incident, stored.ref
    if ref is None:
        ref = notifier.post_incident(incident)
        if incident.closed:
            state.drop_incident(incident.account_id)
        else:
            state.put_incident(StoredIncident(incident, ref, delivered=True))
    elif incident.closed:
        notifier.close_incident(ref, incident)
        state.drop_incident(incident.account_id)
    else:
        notifier.update_incident(ref, incident)
        state.put_incident(StoredIncident(incident, ref, delivered=True))


def _send(notifier: Notifier, item: OutboxItem) -> None:
    if item.kind == UNREACHABLE:
        notifier.post_unreachable(ReachabilityNotice.model_validate_json(item.payload))
    elif item.kind == REACHABLE:
        notifier.post_reachable(ReachabilityNotice.model_validate_json(item.payload))
    elif item.kind == RECHECK:
        assert item.thread is not None, "a re-check report is always queued with its thread"
        notifier.post_recheck(item.thread, RecheckReport.model_validate_json(item.payload))
    elif item.kind == HEALTH_ISSUE:
        assert item.thread is not None, "a health issue notice is always queued with its thread"
        notifier.post_health_issue(item.thread, HealthIssueNotice.model_validate_json(item.payload))
    elif item.kind == PORTAL:
        notifier.post_portal(item.thread, PortalNotice.model_validate_json(item.payload))
    elif item.kind == EXPIRY:
        notifier.post_expiry_warning(ExpiryWarning.model_validate_json(item.payload))
    elif item.kind == AUDIT_HEAD:
        notifier.post_audit_head(AuditHeadNotice.model_validate_json(item.payload))
    elif item.kind == DRIFT:
        notifier.post_drift(DriftNotice.model_validate_json(item.payload))
    elif item.kind == SENSOR_HEALTH:
        notifier.post_sensor_health(SensorHealthNotice.model_validate_json(item.payload))
    elif item.kind == LOOKUP_SUSPENSION:
        notifier.post_lookup_suspension(LookupSuspensionNotice.model_validate_json(item.payload))
    elif item.kind == DSA_REMOVABLE:
        notifier.post_dsa_removable(DsaRemovableNotice.model_validate_json(item.payload))
    else:
        log.error("outbox item %d has an unknown kind %r; dropped", item.id, item.kind)


def flush_outbox(notifier: Notifier, state: MonitorMemory) -> bool:
    """Send queued notices oldest first; stop at the first failure. True when the outbox is empty."""
    with state.exclusive("sending", _sending):
        for item in state.outbox():
            try:
                _send(notifier, item)
            except NotifierError as exc:
                log.warning("notifier unavailable, %s notice kept for the next cycle: %s", item.kind, exc)
                return False
            state.delivered(item)
        return True


def deliver_pending(notifier: Notifier, state: MonitorMemory) -> bool:
    """Send every pending incident change and queued notice. True when nothing is left pending."""
    done = True
    for stored in state.incidents().values():
        if stored.delivered:
            continue
        try:
            _deliver_incident(notifier, state, stored)
        except NotifierError as exc:
            done = False
            subject = incident_subject(stored.incident.account_id)
            log.warning("%s: alert not delivered, kept for the next cycle: %s", subject, exc)
    return flush_outbox(notifier, state) and done
