"""The audit trail: its schema, hash chain and verification, its key, and its views."""

from bot.audit.events import (
    AuditAction,
    AuditError,
    AuditEvent,
    AuditOutcome,
    AuditRow,
    AuditSink,
    cli_actor,
    record_or_log,
)
from bot.audit.trail import AuditTrail, open_audit

__all__ = [
    "AuditAction",
    "AuditError",
    "AuditEvent",
    "AuditOutcome",
    "AuditRow",
    "AuditSink",
    "AuditTrail",
    "cli_actor",
    "open_audit",
    "record_or_log",
]
