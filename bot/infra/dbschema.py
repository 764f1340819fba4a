"""Creating tables that several processes may create at the same moment (replicas, the bot and a CLI)."""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, ProgrammingError, SQLAlchemyError

from bot.infra.redaction import redact

ATTEMPTS = 5


def create_idempotently(step: Callable[[], None], attempts: int = ATTEMPTS) -> None:
    """Run an idempotent schema step, trying again when a concurrent creator made it fail once.

    Another process's `CREATE TABLE` (PostgreSQL: a unique violation in `pg_type`) or its switch to WAL
    (SQLite: "database is locked" without waiting) makes ours fail; the step is simply tried again. The
    last error, or any other one, is raised.
    """
    for attempt in range(attempts):
        try:
            step()
            return
        except (IntegrityError, ProgrammingError, OperationalError):
            if attempt == attempts - 1:
                raise
            time.sleep(0.05 * (attempt + 1))


def db_error_summary(exc: SQLAlchemyError | OSError) -> str:
    """A one-line, secret-free account of a database or file error."""
    if isinstance(exc, OSError):
        text = exc.strerror or ""
    else:
        orig = exc.orig if isinstance(exc, DBAPIError) else None
        text = str(orig).strip().splitlines()[0] if orig is not None and str(orig).strip() else ""
    return redact(text) or type(exc).__name__
