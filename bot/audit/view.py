"""Pure views of audit rows: a short text listing (CLI and Slack `/atp history`) and JSON objects."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bot.audit.trail import AuditRow, AuditVerification

DETAIL_WIDTH = 80


def format_event(row: AuditRow) -> str:
    """One line: `2026-11-25 06:01:02Z  cli:alice  change  corp  ok (reason): detail`."""
    when = row.time.strftime("%Y-%m-%d %H:%M:%SZ")
    outcome = f"{row.outcome} ({row.reason})" if row.reason else row.outcome
    line = f"{when}  {row.actor}  {row.action}  {row.account or '-'}  {outcome}"
    if row.detail:
        detail = row.detail if len(row.detail) <= DETAIL_WIDTH else row.detail[: DETAIL_WIDTH - 1] + "…"
        line += f": {detail}"
    return line


def format_history(
    rows: Sequence[AuditRow], account: str | None = None, refusals: Sequence[AuditRow] = ()
) -> str:
    """A short listing of events, newest first, or a sentence saying there are none; then `refusals`
    (authorization refusals, read apart from `rows`) under a heading of their own."""
    if rows:
        listing = "\n".join(format_event(row) for row in rows)
    else:
        listing = f"No audit events for {account}." if account else "No audit events yet."
    if refusals:
        listing += "\n\nLatest refused requests (listed apart from the events above):\n"
        listing += "\n".join(format_event(row) for row in refusals)
    return listing


def history_json(rows: Sequence[AuditRow]) -> list[dict[str, Any]]:
    return [row.as_dict() for row in rows]


def verification_json(result: AuditVerification) -> dict[str, Any]:
    """`audit verify --json`: `head` is `ID:HASH`, ready for `--anchor`; null unless intact and not empty."""
    return {
        "intact": result.intact,
        "rows": result.rows,
        "head": result.anchor,
        "keyed_from": result.keyed_from,
        "first_broken_id": result.first_broken_id,
        "problem": result.problem,
        "warning": result.warning,
    }
