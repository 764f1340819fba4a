"""Opening the store's SQLite files: owner-only permissions, a busy timeout, explicit transactions."""

from __future__ import annotations

import os
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

from bot.store.base import StoreError

BUSY_TIMEOUT_SECONDS = 30.0


def connect(path: Path) -> sqlite3.Connection:
    """A connection whose `with db:` block is one transaction, taken with the write lock up front."""
    try:
        if not path.exists():
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level="IMMEDIATE")
    except (OSError, sqlite3.Error) as exc:
        raise StoreError(f"cannot open {path}: {exc}", reason="io") from None
    return db


def fetch_one(path: Path, sql: str, params: tuple[Any, ...]) -> Any:
    """One row of a read-only query (or None); a database error becomes a StoreError."""
    try:
        with closing(connect(path)) as db:
            return db.execute(sql, params).fetchone()
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read {path}: {exc}", reason="io") from None
