"""Unexpected failures: one safe line for the person, the traceback for the log, a row for the audit.

Whatever stops a change, a check or a button half-way must end what the person sees with a short,
true sentence. The line never carries a secret: it is redacted like a log record, and cut short.
"""

from __future__ import annotations

import logging

from bot.audit import AuditEvent, AuditOutcome, AuditSink
from bot.config import ConfigError
from bot.infra.logging_setup import TOLD
from bot.infra.redaction import redact

log = logging.getLogger(__name__)

MAX_LINE = 200
INTERNAL_ERROR = "internal-error"  # audit reason: a bug or a failure nobody foresaw
CONFIG_ERROR = "config"  # audit reason: the configuration does not work (e.g. an unreadable ca_file)


def one_line(exc: BaseException) -> str:
    """What went wrong, for a person: a configuration problem as written, anything else as its type and
    the first line of its message; redacted and at most MAX_LINE characters."""
    if isinstance(exc, ConfigError):
        text = "; ".join(exc.problems)
    else:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        text = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    text = redact(text)
    return text if len(text) <= MAX_LINE else text[: MAX_LINE - 1] + "…"


def failure_reason(exc: BaseException) -> str:
    return CONFIG_ERROR if isinstance(exc, ConfigError) else INTERNAL_ERROR


def report_failure(
    audit: AuditSink,
    actor: str,
    action: str,
    account: str | None,
    exc: BaseException,
    *,
    doing: str,
    aftermath: str = "",
) -> str:
    """Log `exc` (a traceback unless it is a configuration problem; the log filter redacts it), audit one
    ERROR row and return the safe line. Never raises: the audit trail may be what failed."""
    line = one_line(exc)
    trace = None if isinstance(exc, ConfigError) else exc
    log.error("%s failed: %s", doing, line, exc_info=trace, extra=TOLD)  # the caller shows `line`
    detail = f"{line}; {aftermath}" if aftermath else line
    try:
        audit.record(
            AuditEvent(
                actor=actor,
                action=action,
                account=account,
                outcome=AuditOutcome.ERROR,
                reason=failure_reason(exc),
                detail=detail,
            )
        )
    except Exception as audit_failure:  # noqa: BLE001 - the failure is logged, the person still gets an answer
        log.error(
            "audit trail unavailable; not recorded: %s %s: %s", action, account, one_line(audit_failure)
        )
    return line
