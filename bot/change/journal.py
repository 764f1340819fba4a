"""The change journal: which password changes are in flight, so one cut short by a crash is not silent.

The change path writes an entry before the connection test, marks it `saving` just before the store is
called, and removes it when the change ends, whatever the outcome; a saved change whose face checks the
sensors next stays, marked `checking`, until those checks end. An entry found later whose account
lock is free (the lock dies with its process) belongs to a change that was killed: `bot.change.recovery`
resolves it. Every write happens under the account's lock. One small JSON file per entry in
`<state_dir>/changes-in-flight/`, mode 0600, written atomically (temporary file, fsync, rename). No secret
is ever written here.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from bot.infra.files import replace_durably, sync_directory, write_synced

log = logging.getLogger(__name__)

JOURNAL_DIR = "changes-in-flight"
_SUFFIX = ".json"
_TEMP_PREFIX = ".tmp-"


class Phase(StrEnum):
    TESTING = "testing"  # the store was not called yet: nothing can have been saved
    SAVING = "saving"  # the test passed and the store was called
    # Saved and audited, the account's lock released: its process checks the sensors. Not the lock but
    # that process (`pid`, alive) keeps another change from taking the entry for a leftover.
    CHECKING = "checking"


@dataclass(frozen=True)
class InFlight:
    """One change in flight. `origin` is opaque to the change path: the face that started the change
    (Slack: user and channel) puts there what it needs to tell the person if the change is cut short."""

    id: str
    account_id: str
    actor: str
    backend: str  # the store backend the change saves to
    started_at: datetime  # UTC
    phase: Phase = Phase.TESTING
    pid: int = field(default_factory=os.getpid)
    origin: Mapping[str, str] = field(default_factory=dict)

    @property
    def running_elsewhere(self) -> bool:
        """A `checking` entry whose process still runs (this one included): not a leftover."""
        if self.phase is not Phase.CHECKING:
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # another user's process
            return True
        return True

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "account_id": self.account_id,
            "actor": self.actor,
            "backend": self.backend,
            "started_at": self.started_at.isoformat(),
            "phase": self.phase.value,
            "pid": self.pid,
            "origin": dict(self.origin),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> InFlight:
        return cls(
            id=str(data["id"]),
            account_id=str(data["account_id"]),
            actor=str(data["actor"]),
            backend=str(data["backend"]),
            started_at=datetime.fromisoformat(data["started_at"]),
            phase=Phase(data["phase"]),
            pid=int(data["pid"]),
            origin={str(k): str(v) for k, v in dict(data.get("origin") or {}).items()},
        )


class ChangeJournal:
    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / JOURNAL_DIR

    def begin(
        self, account_id: str, actor: str, backend: str, origin: Mapping[str, str] | None = None
    ) -> InFlight:
        entry = InFlight(
            id=secrets.token_hex(8),
            account_id=account_id,
            actor=actor,
            backend=backend,
            started_at=datetime.now(UTC),
            origin=dict(origin or {}),
        )
        self._write(entry)
        return entry

    def advance(self, entry: InFlight, phase: Phase) -> InFlight:
        moved = replace(entry, phase=phase)
        self._write(moved)
        return moved

    def finish(self, entry: InFlight) -> None:
        (self.path / f"{entry.id}{_SUFFIX}").unlink(missing_ok=True)
        self._sync_dir()

    def hand_over(self, entry: InFlight, *, to_checks: bool) -> None:
        """After the locked steps: end the entry, or keep it as `checking` while this process checks the
        sensors (`end_checks` ends it then)."""
        if to_checks:
            try:
                self.advance(entry, Phase.CHECKING)
                return
            except OSError as exc:
                log.error("account %s: cannot write the change journal: %s", entry.account_id, exc)
        self.end(entry)

    def checks_of_this_process(self, account_id: str) -> list[InFlight]:
        return [e for e in self.entries(account_id) if e.phase is Phase.CHECKING and e.pid == os.getpid()]

    def end_checks(self, account_id: str) -> None:
        for entry in self.checks_of_this_process(account_id):
            self.end(entry)

    def end(self, entry: InFlight) -> None:
        """`finish`, logging a failure: the entry left behind is resolved at the next start, as if the
        process had died here."""
        try:
            self.finish(entry)
        except OSError as exc:
            log.error("account %s: cannot clear the change journal entry: %s", entry.account_id, exc)

    def entries(self, account_id: str | None = None) -> list[InFlight]:
        """Every entry (oldest first); an unreadable file is logged and skipped, never fatal."""
        if not self.path.is_dir():
            return []
        found = []
        for file in sorted(self.path.glob(f"*{_SUFFIX}")):
            if file.name.startswith(_TEMP_PREFIX):
                continue
            try:
                entry = InFlight.from_json(json.loads(file.read_text(encoding="utf-8")))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.error("change journal: cannot read %s (%s); leaving it for an operator", file, exc)
                continue
            if account_id is None or entry.account_id == account_id:
                found.append(entry)
        return sorted(found, key=lambda e: e.started_at)

    def remove_stray_temporary(self, account_id: str) -> None:
        """The temporary file of a write a crash cut short (no secret in it, just clutter). Only the holder
        of the account's lock may call this: the account's writes are serialised by that lock."""
        self._temporary(account_id).unlink(missing_ok=True)

    def _temporary(self, account_id: str) -> Path:
        return self.path / f"{_TEMP_PREFIX}{account_id}{_SUFFIX}"

    def _write(self, entry: InFlight) -> None:
        self.path.mkdir(mode=0o700, exist_ok=True)
        temp = self._temporary(entry.account_id)
        write_synced(temp, json.dumps(entry.as_json()))
        replace_durably(temp, self.path / f"{entry.id}{_SUFFIX}")

    def _sync_dir(self) -> None:
        sync_directory(self.path)
