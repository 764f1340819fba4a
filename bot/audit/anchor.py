"""Every new head of the chain handed to `[audit] anchor_command`, a sink the bot cannot rewrite.

A head (`ID:HASH`) kept outside the audit database is what catches rows dropped from the end together
with a copy of an older head put back (bot.audit.trail). The operator's program (run as
bot.infra.operator_command runs every operator program: argv, no shell, bounded time and output, a
minimal environment) gets on standard input one line `ID:HASH` per head not delivered yet, oldest
first, at most ANCHOR_BATCH lines per run; exit status 0 means it took them all.

Delivery starts after each append, in the background of the process that appended (a change never
waits for the sink), from the last head delivered: `audit_anchor.delivered_id`, in the audit
database, shared by the CLI, the bot and replicas. A failure is logged, kept in that row (`audit
verify` and the daily head announcement report it) and retried with the next append, the next start
of the bot and the daily announcement, from the same head on: no head is skipped. Two processes
delivering at once may hand a head over twice. The first time the trail is opened with an anchor
command, delivery starts at the head of that moment, which covers every row before it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from bot.audit.schema import anchor, events, head
from bot.infra.operator_command import CommandTimeout, run_command

log = logging.getLogger(__name__)

ANCHOR_BATCH = 100  # heads per run (a sink catching up after an outage gets them in runs of this many)
OUTPUT_LOG_LIMIT = 2000


@dataclass(frozen=True)
class AnchorStatus:
    delivered_id: int | None  # the last row whose head the command took; None: nothing delivered yet
    head_id: int
    failure: str | None = None  # why the last attempt failed
    failed_at: str | None = None

    @property
    def problem(self) -> str | None:
        """The failure for a person, with what has not reached the sink; None when nothing failed."""
        if self.failure is None:
            return None
        after = f"row {self.delivered_id}" if self.delivered_id else "the start"
        return (
            f"the anchor command failed at {self.failed_at}: {self.failure}; the heads after {after} "
            f"(up to row {self.head_id}) have not reached it and are sent again with the next head"
        )


class AnchorDelivery:
    """Hands each new head to the anchor command, from the last one delivered; at most one run at a time
    per trail object, in a background thread that the process waits for before it exits."""

    def __init__(self, engine: Engine, argv: Sequence[str], timeout: float, env: dict[str, str]) -> None:
        self._engine = engine
        self._argv = list(argv)
        self._timeout = timeout
        self._env = env
        self._lock = threading.Lock()
        self._again = False
        self._worker: threading.Thread | None = None

    def start(self) -> None:
        """Note the head of the moment as delivered unless a cursor exists: from here on, no head is
        skipped (the first delivery starts with the next append, or the current head)."""
        try:
            with self._engine.begin() as conn:
                head_id = conn.execute(select(head.c.last_id).where(head.c.id == 1)).scalar() or 0
                _delivered(conn, head_id)
        except IntegrityError:  # another process made the cursor a moment ago
            pass

    def kick(self) -> None:
        """Deliver what is pending, in the background (a run already going runs once more after)."""
        with self._lock:
            self._again = True
            if self._worker is None:
                self._worker = threading.Thread(target=self._drain, name="atp-bot-audit-anchor")
                self._worker.start()

    def wait(self, timeout: float | None = None) -> None:
        """Until the background delivery is done (or `timeout` seconds)."""
        worker = self._worker
        if worker is not None:
            worker.join(timeout)

    def _drain(self) -> None:
        while True:
            with self._lock:
                if not self._again:
                    self._worker = None
                    return
                self._again = False
            self.deliver()

    def deliver(self) -> AnchorStatus:
        """Hand every pending head to the command now; never raises (a failure is logged and kept)."""
        try:
            while pending := self._pending():
                problem = self._run(pending)
                self._settle(pending[-1][0], problem)
                if problem is not None:
                    log.error("audit anchor command: %s", self.status().problem)
                    break
            return self.status()
        except SQLAlchemyError as exc:
            log.error("audit anchor command: cannot read or note the heads: %s", exc.__class__.__name__)
            return AnchorStatus(None, 0, failure=f"the audit database: {exc.__class__.__name__}")

    def status(self) -> AnchorStatus:
        with self._engine.connect() as conn:
            head_id = conn.execute(select(head.c.last_id).where(head.c.id == 1)).scalar() or 0
            row = conn.execute(select(anchor).where(anchor.c.id == 1)).first()
        if row is None:
            return AnchorStatus(None, head_id)
        return AnchorStatus(row.delivered_id or None, head_id, row.failure, row.failed_at)

    def _pending(self) -> list[tuple[int, str]]:
        """The next heads to deliver, oldest first (at most ANCHOR_BATCH)."""
        with self._engine.begin() as conn:
            head_id = conn.execute(select(head.c.last_id).where(head.c.id == 1)).scalar() or 0
            delivered = _delivered(conn, head_id)
            query = (
                select(events.c.id, events.c.hash)
                .where(events.c.id > delivered, events.c.id <= head_id)
                .order_by(events.c.id)
                .limit(ANCHOR_BATCH)
            )
            return [(row.id, row.hash) for row in conn.execute(query)]

    def _run(self, heads: list[tuple[int, str]]) -> str | None:
        """Run the command with `heads` on its input; why it failed, or None."""
        program = self._argv[0]
        lines = "".join(f"{row_id}:{digest}\n" for row_id, digest in heads)
        try:
            result = run_command(self._argv, lines, timeout=self._timeout, env=self._env)
        except CommandTimeout as exc:
            return f"{program} {exc} and was stopped"
        except OSError as exc:
            return f"cannot run {program}: {exc.strerror}"
        for name, text in (("stdout", result.stdout), ("stderr", result.stderr)):
            if text.strip():
                log.debug("audit anchor command %s %s: %s", program, name, text.strip()[:OUTPUT_LOG_LIMIT])
        if result.returncode != 0:
            return (
                f"{program} failed with exit status {result.returncode} ({result.output_sizes()}; "
                "the output is logged at DEBUG, atp-bot -v)"
            )
        return None

    def _settle(self, last_id: int, problem: str | None) -> None:
        """Note a run: the cursor moves on after a success; a failure is kept for `audit verify`."""
        with self._engine.begin() as conn:
            if problem is not None:
                now = datetime.now(UTC).isoformat(timespec="seconds")
                conn.execute(update(anchor).where(anchor.c.id == 1).values(failure=problem, failed_at=now))
                return
            current = conn.execute(select(anchor.c.delivered_id).where(anchor.c.id == 1)).scalar() or 0
            values = {"delivered_id": max(current, last_id), "failure": None, "failed_at": None}
            conn.execute(update(anchor).where(anchor.c.id == 1).values(**values))


def _delivered(conn: Connection, head_id: int) -> int:
    """The cursor: the last row delivered. Made when the trail is first opened with an anchor command,
    just before the head of that moment; one beyond the head (edited) is logged and put back there, so
    new heads are not held back."""
    delivered = conn.execute(select(anchor.c.delivered_id).where(anchor.c.id == 1)).scalar()
    if delivered is None:
        conn.execute(insert(anchor).values(id=1, delivered_id=max(0, head_id - 1)))
        return max(0, head_id - 1)
    if delivered > head_id:
        log.error(
            "audit anchor command: the delivered row %s is beyond the head, row %s (edited?): "
            "delivering from the head on",
            delivered,
            head_id,
        )
        conn.execute(update(anchor).where(anchor.c.id == 1).values(delivered_id=max(0, head_id - 1)))
        return max(0, head_id - 1)
    return int(delivered)
