"""Sensor checks in worker processes, so that no check can starve the bot's acknowledgement path.

A check is CPU work in pure Python (NTLM signing and sealing, SOAP parsing): 500 sensors answering at once
kept the bot's interpreter busy for seconds, and Slack's acknowledgements waited for the GIL behind them
(measured: 15 of 50 `/atp status` past 3 s, `/atp help` up to 3.9 s). In worker processes the checks
contend for the CPU with the bot only through the kernel's scheduler, at a lower priority (`NICENESS`),
and the bot's own threads keep the GIL to themselves.

Each worker runs `threads` checks at once (the fan-out is I/O-bound), and the other scripts the bot runs on
sensors (`run_scripts`: the gMSA host checks); a plan travels to it over a pipe
(the WinRM password included: never in argv, the environment or a file) and its result comes back the
same way. A worker that dies fails the checks it held, as that sensor's failure, and is replaced.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import queue
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import count
from multiprocessing.process import BaseProcess
from multiprocessing.queues import Queue
from types import TracebackType
from typing import Any

from bot.config import Settings
from bot.sensors.checks import CheckPlan, check_planned, check_sensors
from bot.sensors.host_scripts import ScriptPlan, ScriptRun, run_script_plan
from bot.sensors.results import Failure, LogPosition, SensorResult
from bot.sensors.winrm_runner import FailureKind

log = logging.getLogger(__name__)

Plan = CheckPlan | ScriptPlan  # a sensor's check, or another script (the gMSA host checks)

# Checks run at this much lower priority than the bot where the system allows it: they take the CPU the
# bot leaves (a check waits a little, a person's acknowledgement does not).
NICENESS = 10
# How long a check may outlive its own deadline before the bot stops waiting for its worker (a run ends
# by its deadline whatever the sensor does). While every worker thread is busy some check ends within its
# deadline, so a call whose results stop arriving for the longest deadline plus this has a worker with a
# hung thread (checks queued behind others are not late): that worker is replaced.
GRACE_SECONDS = 30.0
# How often the collector looks for a dead worker while no result arrives.
POLL_SECONDS = 0.5


@dataclass(frozen=True)
class LogSetup:
    """How a worker logs (to the bot's stderr, through the same redaction)."""

    level: int
    fmt: str


@dataclass
class _Worker:
    process: BaseProcess
    tasks: Queue[Any]
    held: dict[int, Plan] = field(default_factory=dict)  # task id -> plan, until its result arrives


@dataclass
class _Call:
    """One `run` waiting for its results: (task id, result) as they arrive."""

    results: queue.Queue[tuple[int, Any]] = field(default_factory=queue.Queue)


class CheckWorkers:
    """`processes` worker processes, each checking up to `threads` sensors at once. Use as a context
    manager (or `start`/`close`): closing stops the workers."""

    def __init__(self, processes: int, threads: int, log_setup: LogSetup) -> None:
        if processes < 1 or threads < 1:
            raise ValueError("processes and threads must be at least 1")
        self._processes, self._threads, self._log_setup = processes, threads, log_setup
        # A fresh interpreter per worker: the bot's threads and their locks must not be forked.
        self._context = multiprocessing.get_context("spawn")
        self._results: Queue[Any] = self._context.Queue()
        self._workers: list[_Worker] = []
        self._calls: dict[int, _Call] = {}  # task id -> the call it belongs to
        self._ids = count()
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._collector = threading.Thread(target=self._collect, name="check-results", daemon=True)

    @classmethod
    def for_settings(cls, settings: Settings) -> CheckWorkers | None:
        """The workers `[sensor_checks] worker_processes` asks for; None for checks in the bot's threads."""
        checks = settings.sensor_checks
        if checks.worker_processes == 0:
            return None
        threads = -(-checks.pool_size // checks.worker_processes)  # the pool, shared out
        return cls(
            checks.worker_processes,
            threads,
            LogSetup(logging.getLogger().getEffectiveLevel(), settings.logging.format),
        )

    @property
    def pids(self) -> list[int]:
        """The worker processes' ids (for the operator's `ps`, and tests)."""
        with self._lock:
            return [w.process.pid for w in self._workers if w.process.pid is not None]

    def start(self) -> CheckWorkers:
        with self._lock:
            self._workers = [self._spawn() for _ in range(self._processes)]
        self._collector.start()
        return self

    def close(self) -> None:
        """Stop the workers: each finishes the checks it holds (bounded by their deadlines), then exits.
        Once: closing again does nothing."""
        if self._closing.is_set():
            return
        self._closing.set()
        with self._lock:
            workers = list(self._workers)
        for worker in workers:
            for _ in range(self._threads):
                worker.tasks.put(None)
        for worker in workers:
            worker.process.join(timeout=5)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
            worker.tasks.close()
            worker.tasks.join_thread()  # its feeder thread: none is left behind
        self._collector.join(timeout=5)
        self._results.close()

    def __enter__(self) -> CheckWorkers:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def check_sensors(
        self,
        settings: Settings,
        names: Sequence[str] | None = None,
        *,
        since: datetime | None = None,
        positions: Mapping[str, LogPosition] | None = None,
        on_result: Callable[[SensorResult], None] | None = None,
    ) -> list[SensorResult]:
        """`bot.sensors.check_sensors`, the checks done by these workers."""
        return check_sensors(
            settings, names, since=since, positions=positions, on_result=on_result, runner=self
        )

    def run(self, plans: Sequence[CheckPlan]) -> Iterator[SensorResult]:
        """Check each plan in the workers (`PlanRunner`); yield the results as they arrive."""
        for _, result in self._run(plans):
            yield result

    def run_scripts(self, plans: Sequence[ScriptPlan]) -> Iterator[tuple[str, ScriptRun]]:
        """Run each script in the workers (`ScriptRunner`); yield (sensor name, result) as they arrive."""
        for plan, result in self._run(plans):
            yield plan.target.name, result

    def _run(self, plans: Sequence[Plan]) -> Iterator[tuple[Plan, Any]]:
        if not plans:
            return
        call = _Call()
        silence = max(p.deadline_seconds for p in plans) + GRACE_SECONDS
        pending: dict[int, Plan] = {}
        with self._lock:
            for index, plan in enumerate(plans):
                task_id = next(self._ids)
                worker = self._workers[index % len(self._workers)]
                self._calls[task_id] = call
                worker.held[task_id] = plan
                pending[task_id] = plan
                worker.tasks.put((task_id, plan))
        try:
            while pending:
                try:
                    task_id, result = call.results.get(timeout=silence)
                except queue.Empty:
                    break
                yield pending.pop(task_id), result
            if pending:  # a worker that neither answered nor died: a thread of it hangs
                self._recycle(set(pending))
            for plan in pending.values():
                yield plan, _failed(plan, "the check's worker process did not answer in time")
        finally:
            with self._lock:
                for task_id in pending:
                    self._calls.pop(task_id, None)

    def _recycle(self, late: set[int]) -> None:
        """Stop each worker holding one of the `late` checks: its thread is abandoned with the process,
        and the collector starts a new one (failing the other checks it held), so hung threads never
        pile up until every check waits behind them."""
        with self._lock:
            stuck = [w for w in self._workers if late & w.held.keys()]
            for worker in stuck:
                for task_id in late:
                    worker.held.pop(task_id, None)
        for worker in stuck:
            log.warning("a sensor check worker held a check past its deadline: it is replaced")
            worker.process.kill()

    def _spawn(self) -> _Worker:
        tasks: Queue[Any] = self._context.Queue()
        process = self._context.Process(
            target=_serve,
            args=(tasks, self._results, self._threads, self._log_setup),
            name="atp-bot-checks",
            daemon=True,
        )
        process.start()
        return _Worker(process, tasks)

    def _collect(self) -> None:
        """Route each result to its call; replace a worker that died, failing the checks it held."""
        while not (self._closing.is_set() and not self._calls):
            try:
                task_id, result = self._results.get(timeout=POLL_SECONDS)
            except queue.Empty:
                if not self._closing.is_set():
                    self._replace_dead()
                continue
            except (EOFError, OSError):
                return
            self._deliver(task_id, result)

    def _deliver(self, task_id: int, result: Any) -> None:
        with self._lock:
            for worker in self._workers:
                worker.held.pop(task_id, None)
            call = self._calls.pop(task_id, None)
        if call is not None:  # None: its caller stopped waiting
            call.results.put((task_id, result))

    def _replace_dead(self) -> None:
        with self._lock:
            dead = [w for w in self._workers if not w.process.is_alive()]
            for worker in dead:
                self._workers[self._workers.index(worker)] = self._spawn()
        for worker in dead:
            log.error(
                "a sensor check worker stopped unexpectedly (exit code %s); %d check(s) it held failed",
                worker.process.exitcode,
                len(worker.held),
            )
            for task_id, plan in list(worker.held.items()):
                self._deliver(task_id, _failed(plan, "the check's worker process stopped unexpectedly"))


def _failed(plan: Plan, why: str) -> SensorResult | Failure:
    failure = Failure(FailureKind.WINRM_FAULT, why)
    return SensorResult.failed(plan.target, failure) if isinstance(plan, CheckPlan) else failure


def _execute(plan: Plan) -> SensorResult | ScriptRun:
    return check_planned(plan) if isinstance(plan, CheckPlan) else run_script_plan(plan)


def _serve(tasks: Queue[Any], results: Queue[Any], threads: int, log_setup: LogSetup) -> None:
    """A worker process: `threads` threads each take a plan, check it, and send back the result."""
    from bot.infra.dumpable import clear_dumpable
    from bot.infra.logging_setup import configure_logging
    from bot.infra.redaction import active_secret

    configure_logging(logging.getLevelName(log_setup.level), log_setup.fmt)
    clear_dumpable()  # it holds the WinRM password: spawning (execve) made it dumpable again
    try:
        os.nice(NICENESS)
    except OSError as exc:  # e.g. the systemd unit's SystemCallFilter=~@resources answers EPERM
        log.info("sensor check worker: runs at the bot's priority (%s)", exc.strerror)
    threading.Thread(target=_exit_with_the_bot, name="bot-watch", daemon=True).start()

    def work() -> None:
        while (task := tasks.get()) is not None:
            task_id, plan = task
            if plan.password is None:
                results.put((task_id, _execute(plan)))
                continue
            with active_secret(plan.password):
                results.put((task_id, _execute(plan)))

    pool = [threading.Thread(target=work, name=f"sensor-{i}") for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()


def _exit_with_the_bot() -> None:
    """End this worker when the bot ends, even killed (SIGKILL, OOM): no orphan checks a fleet for nobody."""
    parent = multiprocessing.parent_process()
    if parent is not None:
        multiprocessing.connection.wait([parent.sentinel])
    os._exit(0)
