"""A local record of saves (time, actor) for backends that keep no such metadata themselves.

The ATA Center and command backends save the secret elsewhere; this small SQLite file in the state
directory remembers only who saved what when, so `store status` can answer for every backend.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

from bot.store.base import BackendName, CredentialMetadata, StoreError
from bot.store.sqlite_file import connect, fetch_one

_SCHEMA = """
CREATE TABLE IF NOT EXISTS saves (
    account_id TEXT NOT NULL,
    backend TEXT NOT NULL,
    saved_at TEXT NOT NULL,
    saved_by TEXT NOT NULL,
    PRIMARY KEY (account_id, backend)
)
"""


class MetadataLedger:
    def __init__(self, path: Path, backend: BackendName) -> None:
        self.path = path
        self.backend: BackendName = backend
        with closing(connect(path)) as db, db:
            db.execute(_SCHEMA)

    def record(self, account_id: str, actor: str) -> CredentialMetadata:
        meta = CredentialMetadata(account_id, datetime.now(UTC), actor, self.backend)
        try:
            with closing(connect(self.path)) as db, db:
                db.execute(
                    "INSERT INTO saves (account_id, backend, saved_at, saved_by) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (account_id, backend) DO UPDATE SET saved_at = excluded.saved_at, "
                    "saved_by = excluded.saved_by",
                    (account_id, self.backend, meta.saved_at.isoformat(), actor),
                )
        except sqlite3.Error as exc:
            raise StoreError(
                f"the credential was saved, but {self.path} could not record it: {exc}"
            ) from None
        return meta

    def get(self, account_id: str) -> CredentialMetadata | None:
        row = fetch_one(
            self.path,
            "SELECT saved_at, saved_by FROM saves WHERE account_id = ? AND backend = ?",
            (account_id, self.backend),
        )
        if row is None:
            return None
        return CredentialMetadata(account_id, datetime.fromisoformat(row[0]), row[1], self.backend)
