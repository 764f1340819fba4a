"""Leader election between replicas: whoever holds a PostgreSQL session advisory lock is the leader.

One background thread keeps one dedicated connection. As a standby it tries `pg_try_advisory_lock`
every `poll_seconds`; as the leader it checks every `poll_seconds` that the connection (and so the lock)
is still alive, and steps down at once when it is not, then keeps trying to take the lock again.

Fencing: a leader whose connection broke notices it within about two polls (the next check, bounded by
the connection's timeouts). A replica that has just taken the lock therefore waits `2 * poll_seconds`
and checks its own connection again before it calls `on_elected`, so that an old leader that is still
alive has stepped down before the new one starts. Takeover after a leader dies thus takes at most
about `3 * poll_seconds` (the server frees the lock at once when the process is gone).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sqlalchemy import text
from sqlalchemy.engine import URL, Connection
from sqlalchemy.exc import SQLAlchemyError

from bot.infra.advisory import advisory_key, lock_engine

log = logging.getLogger(__name__)

SCHEDULER_LOCK = "atp-bot:scheduler-leader"


class LeaderElection:
    """Call `start()` once and `stop()` once; the callbacks run on the election thread."""

    def __init__(
        self,
        url: URL,
        *,
        poll_seconds: float,
        on_elected: Callable[[], None],
        on_demoted: Callable[[], None],
        name: str = SCHEDULER_LOCK,
    ) -> None:
        self._engine = lock_engine(url, poll_seconds)
        self._key = advisory_key(name)
        self._poll = poll_seconds
        self._on_elected = on_elected
        self._on_demoted = on_demoted
        self._stop = threading.Event()
        self._leader = threading.Event()
        self._reachable = False
        self._connection: Connection | None = None
        self._thread = threading.Thread(target=self._run, name="atp-bot-leader", daemon=True)

    @property
    def is_leader(self) -> bool:
        return self._leader.is_set()

    @property
    def reachable(self) -> bool:
        """Whether the last attempt reached the database (a standby that cannot could never take over)."""
        return self._reachable

    @property
    def role(self) -> str:
        return "leader" if self.is_leader else "standby"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop polling, step down if leading (`on_demoted`), and release the lock by closing the session."""
        self._stop.set()
        self._thread.join()
        self._demote("stopping")
        self._disconnect()
        self._engine.dispose()

    def wait_elected(self, timeout: float) -> bool:
        return self._leader.wait(timeout)

    # -- the election thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.is_leader:
                if not self._alive():
                    self._demote("lost the connection that holds the leader lock")
            elif self._try_lock() and not self._stop.wait(2 * self._poll) and self._alive():
                self._elect()
            self._stop.wait(self._poll)

    def _query(self, sql: str) -> object:
        """One statement on the lock's connection (opened when needed); None when the database is gone."""
        try:
            if self._connection is None:
                self._connection = self._engine.connect()
            value = self._connection.execute(text(sql), {"key": self._key}).scalar()
        except SQLAlchemyError as exc:
            if self._reachable or self.is_leader:
                log.warning("leader election: database unreachable: %s", type(exc).__name__)
            self._reachable = False
            self._disconnect()
            return None
        self._reachable = True
        return value

    def _try_lock(self) -> bool:
        return self._query("SELECT pg_try_advisory_lock(:key)") is True

    def _alive(self) -> bool:
        return self._query("SELECT 1") == 1

    def _elect(self) -> None:
        self._leader.set()
        log.info("leader election: this replica is the leader and runs the scheduler")
        try:
            self._on_elected()
        except Exception:  # a failing callback must not leave a leader that does nothing
            log.exception("leader election: starting as the leader failed; stepping down")
            self._demote("starting as the leader failed")
            self._disconnect()

    def _demote(self, why: str) -> None:
        if not self.is_leader:
            return
        self._leader.clear()
        log.warning("leader election: no longer the leader (%s); the scheduler is paused", why)
        try:
            self._on_demoted()
        except Exception:  # the thread must keep running to take the lock again
            log.exception("leader election: pausing as a standby failed")

    def _disconnect(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            connection.close()
        except SQLAlchemyError:
            connection.invalidate()
