"""The background scheduler (APScheduler 3): the monitor cycle, the daily expiry check, re-checks.

Jobs live in a persistent SQLAlchemy job store (SQLite in the state directory by default), so the
one-off re-checks scheduled after a change survive a restart. APScheduler stores a job as a reference to
a top-level function plus its arguments, so every job here is a module-level function taking only
JSON-simple arguments (strings, numbers, dicts of strings). The objects a job needs (settings, notifier,
store, audit trail) come from a module-level registry: `start_scheduler(monitor)` registers the
monitor and `Scheduler.shutdown()` clears it. A job that runs while no monitor is registered logs an
error and does nothing.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import SQLAlchemyError

from bot.config import ConfigError, Settings
from bot.graph import GraphError
from bot.infra.dbschema import create_idempotently
from bot.infra.state_dir import state_dir
from bot.monitor.audit_head import run_audit_head_announcement
from bot.monitor.context import MonitorContext
from bot.monitor.cycle import CycleResult, run_monitor_cycle
from bot.monitor.drift_watch import run_drift_check
from bot.monitor.expiry import run_expiry_check
from bot.monitor.issue_watch import watch_step, watch_steps
from bot.monitor.models import MessageRef
from bot.monitor.portal_watch import watch_portal
from bot.monitor.recheck import run_recheck

log = logging.getLogger(__name__)

JOBSTORE_NAME = "scheduler.sqlite"
MONITOR_JOB = "monitor"
EXPIRY_JOB = "expiry"
DRIFT_JOB = "drift"
AUDIT_HEAD_JOB = "audit-head"
RECHECK_PREFIX = "recheck:"
ISSUE_WATCH_PREFIX = "issue-watch:"
# A re-check missed while the bot was down still runs when it starts again within this time.
RECHECK_GRACE = timedelta(hours=24)

_registry_lock = threading.Lock()
_monitor: MonitorContext | None = None


def register_monitor(monitor: MonitorContext | None) -> None:
    global _monitor
    with _registry_lock:
        _monitor = monitor


def current_monitor() -> MonitorContext | None:
    with _registry_lock:
        return _monitor


def _monitor_or_log(job: str) -> MonitorContext | None:
    monitor = current_monitor()
    if monitor is None:
        log.error("job %s: no monitor registered (start_scheduler was not called); skipped", job)
    return monitor


# --- job functions: top level, JSON-simple arguments (APScheduler stores references to them) ---


def monitor_job() -> None:
    monitor = _monitor_or_log(MONITOR_JOB)
    if monitor is None:
        return
    try:
        run_monitor_cycle(monitor)
        watch_portal(monitor)
    except ConfigError as exc:
        log.error("monitor cycle skipped: %s", "; ".join(exc.problems))


def expiry_job() -> None:
    monitor = _monitor_or_log(EXPIRY_JOB)
    if monitor is None:
        return
    try:
        run_expiry_check(monitor)
    except (ConfigError, GraphError) as exc:
        log.error("expiry check skipped: %s", exc)


def drift_job() -> None:
    monitor = _monitor_or_log(DRIFT_JOB)
    if monitor is not None:
        run_drift_check(monitor)


def audit_head_job() -> None:
    monitor = _monitor_or_log(AUDIT_HEAD_JOB)
    if monitor is not None:
        run_audit_head_announcement(monitor)


def recheck_job(account_id: str, thread: dict[str, str], changed_at: str, delay_minutes: int) -> None:
    monitor = _monitor_or_log(f"{RECHECK_PREFIX}{account_id}")
    if monitor is None:
        return
    try:
        run_recheck(
            monitor,
            account_id,
            MessageRef.model_validate(thread),
            datetime.fromisoformat(changed_at),
            delay_minutes,
        )
    except ConfigError as exc:
        log.error("account %s: re-check skipped: %s", account_id, "; ".join(exc.problems))


def issue_watch_job(account_id: str, thread: dict[str, str], changed_at: str, step: int) -> None:
    monitor = _monitor_or_log(f"{ISSUE_WATCH_PREFIX}{account_id}")
    if monitor is None:
        return
    try:
        watch_step(
            monitor, account_id, MessageRef.model_validate(thread), datetime.fromisoformat(changed_at), step
        )
    except (ConfigError, GraphError) as exc:
        log.error("account %s: health issue watch %d skipped: %s", account_id, step, exc)


@dataclass(frozen=True)
class PendingJob:
    id: str
    next_run: datetime | None


class Scheduler:
    """A started scheduler bound to one monitor. Create it with `start_scheduler`."""

    def __init__(self, monitor: MonitorContext, aps: BackgroundScheduler) -> None:
        self.monitor = monitor
        self.aps = aps

    def schedule_rechecks(self, account_id: str, thread_ref: MessageRef, changed_at: datetime) -> list[str]:
        """After a successful save: one persisted re-check per configured delay, reported in `thread_ref`.

        Scheduling the same change twice replaces its jobs. Returns the job ids.
        """
        config = self.monitor.settings.scheduler
        self.monitor.memory.forget_expiry(account_id)  # the new password has a new expiry date
        if not config.enabled:
            return []
        self.monitor.settings.account(account_id)  # raises ConfigError for an unknown account
        changed_at = changed_at.astimezone(UTC)
        ids = []
        for delay in config.recheck_delays_minutes:
            job_id = f"{RECHECK_PREFIX}{account_id}:{changed_at:%Y%m%dT%H%M%S.%f}:{delay}"
            args = [account_id, thread_ref.model_dump(), changed_at.isoformat(), delay]
            name = f"re-check {account_id} +{delay} min"
            self._after_change(recheck_job, job_id, name, changed_at + timedelta(minutes=delay), args)
            ids.append(job_id)
        log.info("account %s: %d re-check(s) scheduled after the change", account_id, len(ids))
        return ids + self._schedule_issue_watch(account_id, thread_ref, changed_at)

    def _schedule_issue_watch(
        self, account_id: str, thread_ref: MessageRef, changed_at: datetime
    ) -> list[str]:
        """With Graph: one job per poll of the DSA health issues after the change (issue_watch.py)."""
        graph = self.monitor.settings.graph
        if not graph.enabled:
            return []
        ids = []
        for step in range(1, watch_steps(graph.issue_watch_minutes, graph.issue_watch_poll_minutes) + 1):
            job_id = f"{ISSUE_WATCH_PREFIX}{account_id}:{changed_at:%Y%m%dT%H%M%S.%f}:{step}"
            run_at = changed_at + timedelta(minutes=step * graph.issue_watch_poll_minutes)
            args = [account_id, thread_ref.model_dump(), changed_at.isoformat(), step]
            self._after_change(
                issue_watch_job, job_id, f"health issue watch {account_id} #{step}", run_at, args
            )
            ids.append(job_id)
        return ids

    def _after_change(
        self, job: Callable[..., None], job_id: str, name: str, run_at: datetime, args: list[Any]
    ) -> None:
        """A persisted one-off job of a change; missed while the bot was down, it runs when it starts."""
        self.aps.add_job(
            job,
            trigger=DateTrigger(run_date=run_at, timezone=UTC),
            args=args,
            id=job_id,
            name=name,
            replace_existing=True,
            misfire_grace_time=int(RECHECK_GRACE.total_seconds()),
        )

    def recheck_now(self) -> None:
        """The *Re-check now* action: run the monitor cycle as soon as possible (in the scheduler)."""
        if self.aps.get_job(MONITOR_JOB) is None:
            self.aps.add_job(monitor_job, id=MONITOR_JOB, replace_existing=True)
        else:
            self.aps.modify_job(MONITOR_JOB, next_run_time=datetime.now(UTC))

    def run_cycle_now(self) -> CycleResult:
        """*Re-check now* with an answer: run one monitor cycle in the calling thread and return what it
        found (the alert is updated or closed as usual). Waits if a cycle is running."""
        return run_monitor_cycle(self.monitor)

    def pending(self) -> list[PendingJob]:
        return [PendingJob(job.id, job.next_run_time) for job in self.aps.get_jobs()]

    def run_job_now(self, job_id: str) -> None:
        """Run a job in the calling thread, now (tests, and operators who cannot wait).

        A one-off job (a re-check) is removed afterwards, as if it had fired.
        """
        job = self.aps.get_job(job_id)
        if job is None:
            raise KeyError(f"no scheduled job {job_id!r}")
        job.func(*job.args, **job.kwargs)
        if isinstance(job.trigger, DateTrigger):
            self.aps.remove_job(job_id)

    def shutdown(self, wait: bool = True) -> None:
        """Stop the scheduler (waiting for running jobs when `wait`), unregister the monitor and close its
        memory's connections.

        APScheduler 3 processes due jobs once more after `shutdown()` (agronholm/apscheduler#285): a
        one-off re-check due at that moment would go to the stopped executor and then be deleted from the
        persistent store. Detaching the store first keeps every pending job for the next start.
        """
        if self.aps.running:
            self.aps.pause()
            self.aps.remove_jobstore("default", shutdown=True)
            self.aps.shutdown(wait=wait)
        if current_monitor() is self.monitor:
            register_monitor(None)
        self.monitor.memory.close()


def jobstore_url(settings: Settings) -> URL:
    """The job store's URL, with the password from `jobstore_password_env`/`_file` when one is set."""
    config = settings.scheduler
    if config.jobstore_url:
        password = config.jobstore_password()
        url = make_url(config.jobstore_url)
        return url if password is None else url.set(password=password.get_secret_value())
    path = state_dir(settings) / JOBSTORE_NAME
    try:
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    except OSError as exc:
        raise ConfigError([f"scheduler: cannot create {path}: {exc.strerror}"]) from None
    return URL.create("sqlite", database=str(path))


def _expiry_trigger(settings: Settings) -> CronTrigger | IntervalTrigger:
    config = settings.scheduler
    daily = config.expiry_daily_at
    if daily is not None:
        return CronTrigger(hour=daily[0], minute=daily[1], timezone=UTC)
    assert config.expiry_interval_minutes is not None
    return IntervalTrigger(minutes=config.expiry_interval_minutes, timezone=UTC)


def _plan_audit_head(aps: BackgroundScheduler, settings: Settings) -> None:
    """The daily head announcement: its own switch (`[audit] announce_head`), apart from `[scheduler]`."""
    if not settings.audit.announce_head:
        if aps.get_job(AUDIT_HEAD_JOB) is not None:
            aps.remove_job(AUDIT_HEAD_JOB)
        return
    hour, minute = settings.audit.announce_daily_at
    aps.add_job(
        audit_head_job,
        trigger=CronTrigger(hour=hour, minute=minute, timezone=UTC),
        id=AUDIT_HEAD_JOB,
        name="audit head announcement",
        replace_existing=True,
        misfire_grace_time=int(timedelta(hours=12).total_seconds()),
    )


def start_scheduler(monitor: MonitorContext, *, paused: bool = False) -> Scheduler:
    """Register `monitor`, start the scheduler on the persistent job store and (re)plan the periodic jobs.

    `paused=True` starts it without running anything by itself (tests; jobs then run via `run_job_now`).
    """
    settings = monitor.settings
    config = settings.scheduler
    url = jobstore_url(settings)
    try:
        store = SQLAlchemyJobStore(url=url)
        # Replicas starting together race on CREATE TABLE (PostgreSQL); the loser tries again.
        create_idempotently(lambda: store.jobs_t.create(store.engine, checkfirst=True))
        aps = BackgroundScheduler(
            jobstores={"default": store},
            executors={"default": ThreadPoolExecutor(max_workers=4)},
            job_defaults={"coalesce": True, "max_instances": 1},
            timezone=UTC,
        )
        aps.start(paused=True)
    except (SQLAlchemyError, ImportError) as exc:
        where = url.render_as_string(hide_password=True)
        raise ConfigError([f"scheduler.jobstore_url: cannot use {where}: {type(exc).__name__}"]) from None
    register_monitor(monitor)
    if config.enabled:
        interval = config.monitor_interval_minutes
        aps.add_job(
            monitor_job,
            trigger=IntervalTrigger(minutes=interval, timezone=UTC),
            id=MONITOR_JOB,
            name="credential-error monitor",
            replace_existing=True,
            misfire_grace_time=interval * 60,
        )
        aps.add_job(
            drift_job,
            trigger=IntervalTrigger(minutes=config.drift_interval_minutes, timezone=UTC),
            id=DRIFT_JOB,
            name="password drift check",
            replace_existing=True,
            misfire_grace_time=config.drift_interval_minutes * 60,
        )
        aps.add_job(
            expiry_job,
            trigger=_expiry_trigger(settings),
            id=EXPIRY_JOB,
            name="password expiry check",
            replace_existing=True,
            misfire_grace_time=int(timedelta(hours=12).total_seconds()),
        )
    else:
        for job_id in (MONITOR_JOB, EXPIRY_JOB, DRIFT_JOB):
            if aps.get_job(job_id) is not None:
                aps.remove_job(job_id)
    _plan_audit_head(aps, settings)
    if not paused:
        aps.resume()
    log.info("scheduler started (%s)", "enabled" if config.enabled else "disabled: no periodic jobs")
    return Scheduler(monitor, aps)
