"""PostgreSQL session advisory locks: the building block that lets several replicas share one database.

A session lock (`pg_try_advisory_lock`) belongs to one database connection: the server releases it when
that session ends for any reason (clean close, killed process, `pg_terminate_backend`, a dead TCP peer
detected by keepalives). Connections here therefore bound how long a dead peer can keep a lock: TCP
keepalives on both sides and a short statement timeout, all derived from one `timeout` in seconds.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

# libpq-based drivers understand these connection parameters (psycopg 3, psycopg2).
_LIBPQ_DRIVERS = {"psycopg", "psycopg2"}


def advisory_key(name: str) -> int:
    """A fixed signed 64-bit lock key for `name` (what `pg_try_advisory_lock(bigint)` takes)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def lock_engine(url: URL, timeout: float, *, pooled: bool = False, autocommit: bool = True) -> Engine:
    """An engine whose sessions give up on a dead peer after about `timeout` seconds: autocommit for
    locks, transactional (`autocommit=False`) for the state that replicas share.

    With a libpq driver (psycopg, psycopg2): client side, a connect timeout, TCP keepalives and
    `tcp_user_timeout`; server side (session settings), `tcp_keepalives_*` so that the server ends a
    vanished client's session, and with it its locks, instead of after the kernel's two-hour default,
    and a `statement_timeout`. Other drivers get the server's defaults.
    """
    seconds = max(1, math.ceil(timeout))
    connect_args: dict[str, Any] = {}
    if url.get_driver_name() in _LIBPQ_DRIVERS:
        server = {
            "statement_timeout": seconds * 1000,
            "tcp_keepalives_idle": seconds,
            "tcp_keepalives_interval": seconds,
            "tcp_keepalives_count": 3,
        }
        connect_args = {
            "connect_timeout": max(2, seconds),
            "keepalives": 1,
            "keepalives_idle": seconds,
            "keepalives_interval": seconds,
            "keepalives_count": 3,
            "tcp_user_timeout": seconds * 1000,
            "options": " ".join(f"-c {name}={value}" for name, value in server.items()),
        }
    options: dict[str, Any] = {"pool_pre_ping": True} if pooled else {"poolclass": NullPool}
    if autocommit:
        options["isolation_level"] = "AUTOCOMMIT"
    return create_engine(url, connect_args=connect_args, **options)


class AdvisoryLocks:
    """Named, non-blocking locks shared by every process that uses the same database (one pooled
    connection per lock held)."""

    def __init__(self, url: URL, timeout: float) -> None:
        self._engine = lock_engine(url, timeout, pooled=True)

    @contextmanager
    def hold(self, name: str) -> Iterator[bool]:
        """Yield True while holding `name`, False when another session holds it. Raises SQLAlchemyError
        when the database cannot be reached. Released at exit, or by the server if the session dies."""
        key = {"key": advisory_key(name)}
        with self._engine.connect() as conn:
            held = conn.execute(text("SELECT pg_try_advisory_lock(:key)"), key).scalar() is True
            try:
                yield held
            finally:
                if held:
                    try:
                        conn.execute(text("SELECT pg_advisory_unlock(:key)"), key)
                    except SQLAlchemyError:
                        conn.invalidate()  # the session is gone, and its lock with it

    @contextmanager
    def wait_for(self, name: str, *, poll: float, timeout: float) -> Iterator[None]:
        """Hold `name`, waiting (polling every `poll` s) while another session holds it; TimeoutError
        after `timeout` s. For work that must not run twice at once across replicas but must not be
        skipped either (a monitor cycle, sending notices)."""
        deadline = time.monotonic() + timeout
        while True:
            with self.hold(name) as held:
                if held:
                    yield
                    return
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{name}: still held elsewhere after {timeout:.0f} s")
            time.sleep(poll)

    def close(self) -> None:
        self._engine.dispose()
