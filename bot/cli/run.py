"""`atp-bot run`: run the Slack bot until SIGINT/SIGTERM (Socket Mode or HTTP, per `[slack] mode`)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from threading import Event
from types import FrameType
from typing import TYPE_CHECKING, Any

from bot.cli import context
from bot.config.core import ConfigError, parse_listen
from bot.infra.exitcodes import ExitCode

if TYPE_CHECKING:
    from bot.change import PasswordChanges
    from bot.config import Settings
    from bot.infra.health import HealthServer
    from bot.infra.leader import LeaderElection
    from bot.monitor.notify import Notifier
    from bot.monitor.scheduler import Scheduler
    from bot.sensors import ScriptRunner, SensorChecker
    from bot.slack.runtime import SlackRuntime
    from bot.slack.secrets import SlackSecrets

log = logging.getLogger(__name__)

NO_CHAT_FACE = (
    "slack: atp-bot run serves Slack, and the file has no [slack] table (without one only the command line "
    "is used); add [slack] with its settings (an empty table means Socket Mode with the defaults)"
)


def register(commands: Any) -> None:
    parser = commands.add_parser("run", help="run the Slack bot (Socket Mode or HTTP, per [slack] mode)")
    parser.add_argument(
        "--listen",
        metavar="HOST:PORT",
        type=_listen_address,
        help="HTTP mode: listen here instead of [slack] listen (the container files pass 0.0.0.0:3000)",
    )
    parser.set_defaults(handler=run)


def _listen_address(value: str) -> str:
    try:
        parse_listen(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def run(args: argparse.Namespace) -> int:
    from bot.infra.state_dir import state_dir_lock
    from bot.slack.secrets import SlackSecrets

    settings = context.load(args, service=True)
    if args.listen is not None:
        settings = settings.model_copy(
            update={"slack": settings.slack.model_copy(update={"listen": args.listen})}
        )
    if not settings.accounts:
        raise ConfigError(["accounts: atp-bot run needs at least one [[accounts]] table"])
    if not settings.slack_face:
        raise ConfigError([NO_CHAT_FACE])
    secrets = SlackSecrets.from_env(settings.slack)
    # The state directory's lock, held for the bot's lifetime: `store rotate-key` refuses to run beside it.
    with state_dir_lock(settings, exclusive=False), _sensor_checker(settings) as (checker, scripts):
        return _run(settings, secrets, checker, scripts)


@contextmanager
def _sensor_checker(settings: Settings) -> Iterator[tuple[SensorChecker, ScriptRunner | None]]:
    """The checks, and every other script run on the sensors, in `[sensor_checks] worker_processes`
    processes (stopped after the bot), or in its threads.

    Started after the secrets left the environment: a worker inherits it."""
    from bot.sensors import CheckWorkers, check_sensors

    workers = CheckWorkers.for_settings(settings)
    if workers is None:
        yield check_sensors, None
        return
    with workers:
        yield workers.check_sensors, workers


def _run(
    settings: Settings, secrets: SlackSecrets, checker: SensorChecker, scripts: ScriptRunner | None
) -> int:
    from slack_bolt.error import BoltError
    from slack_sdk.errors import SlackApiError, SlackClientError

    from bot.change import open_changes
    from bot.change.approvals import ApprovalError
    from bot.infra.metrics import count_open_alerts
    from bot.monitor.context import MonitorContext
    from bot.monitor.scheduler import start_scheduler
    from bot.slack.runtime import SlackRuntime, SlackUnreachable
    from commands import MODULES
    from commands.password import tell_interrupted

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("signal %s: stopping", signal.Signals(signum).name)
        stop.set()

    changes = open_changes(settings, checker, scripts)
    if changes.audit.anchor is not None:  # heads a previous run or the CLI could not hand over
        changes.audit.anchor.kick()
    # Before Slack takes requests, so that no new change of an account resolves its leftover first.
    recoveries = changes.recover_interrupted()
    monitor = MonitorContext.create(settings, _notifier(settings, secrets), changes)
    count_open_alerts(monitor.memory.open_incidents)
    # The scheduler starts paused: its jobs run once Slack is connected, so a first alert can be posted.
    scheduler = start_scheduler(monitor, paused=True)
    try:
        runtime = SlackRuntime(
            settings,
            secrets=secrets,
            audit=changes.audit,
            modules=MODULES,  # the composition root hands the framework its feature modules
            changes=changes,
            scheduler=scheduler,
        )
        runtime.start()
    except (SlackApiError, BoltError) as exc:
        scheduler.shutdown()
        print(f"atp-bot: Slack refused to start the bot: {_slack_error(exc)}", file=sys.stderr)
        return ExitCode.USAGE if "invalid_auth" in str(exc) else ExitCode.UNREACHABLE
    except (SlackUnreachable, SlackClientError, OSError) as exc:
        scheduler.shutdown()
        print(f"atp-bot: cannot reach Slack at {settings.slack.api_url}: {exc}", file=sys.stderr)
        return ExitCode.UNREACHABLE
    except ApprovalError as exc:  # the held requests' database (with replicas, the shared PostgreSQL)
        scheduler.shutdown()
        print(f"atp-bot: {exc}", file=sys.stderr)
        return ExitCode.UNREACHABLE
    health = None
    election = None
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        election = _lead_scheduler(settings, scheduler)
        runtime.services.submit(tell_interrupted, runtime.services, recoveries)
        health = _health_server(settings, runtime, scheduler, changes, election)
        log.info("atp-bot is running in %s mode", settings.slack.mode)
        _serve(settings, scheduler, election, stop)
    finally:
        if health is not None:
            health.stop()
        runtime.stop()
        scheduler.shutdown()  # waits for running jobs, so the lock is released only after them
        if election is not None:
            election.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return ExitCode.OK


def _lead_scheduler(settings: Settings, scheduler: Scheduler) -> LeaderElection | None:
    """Run the scheduler here: at once when alone, else only while elected (`[scheduler] leader_lock_url`)."""
    from bot.infra.leader import LeaderElection
    from bot.infra.metrics import SCHEDULER_LEADER

    config = settings.scheduler
    lock_url = config.leader_lock()
    if lock_url is None:
        scheduler.aps.resume()
        SCHEDULER_LEADER.set(1)
        return None

    def elected() -> None:
        SCHEDULER_LEADER.set(1)
        if scheduler.aps.running:
            scheduler.aps.resume()

    def demoted() -> None:
        SCHEDULER_LEADER.set(0)
        if scheduler.aps.running:
            scheduler.aps.pause()

    election = LeaderElection(
        lock_url,
        poll_seconds=config.leader_poll_seconds,
        on_elected=elected,
        on_demoted=demoted,
    )
    SCHEDULER_LEADER.set(0)
    election.start()
    log.info("scheduler: standby until elected through the leader lock")
    return election


def _serve(settings: Settings, scheduler: Scheduler, election: LeaderElection | None, stop: Event) -> None:
    """Wait for `stop`, waking up at least every second: Python runs signal handlers in the main thread
    only, and waking makes sure it does even when the kernel delivered SIGTERM to another thread (seen
    under load: the bot never stopped). The leader also wakes its scheduler each time: APScheduler only
    looks at the shared job store when its own next job is due, so a re-check added by a standby would
    wait for it."""
    from apscheduler.schedulers.base import STATE_RUNNING

    interval = min(1.0, settings.scheduler.leader_poll_seconds)
    while not stop.wait(interval):
        if election is not None and election.is_leader and scheduler.aps.state == STATE_RUNNING:
            scheduler.aps.wakeup()


def _health_server(
    settings: Settings,
    runtime: SlackRuntime,
    scheduler: Scheduler,
    changes: PasswordChanges,
    election: LeaderElection | None,
) -> HealthServer | None:
    """`/healthz` and `/metrics` on `[observability] listen`, when set."""
    from apscheduler.schedulers.base import STATE_PAUSED, STATE_RUNNING

    from bot.infra.health import HealthServer

    if settings.observability.listen is None:
        return None
    account = settings.accounts[0].id

    def store_reachable() -> bool:
        changes.store.metadata(account)  # raises StoreError when the store cannot be read
        return True

    def scheduler_ok() -> bool:
        """Running on the leader (or a single instance), paused and ready on a standby."""
        if election is None or election.is_leader:
            return bool(scheduler.aps.state == STATE_RUNNING)
        return bool(scheduler.aps.state == STATE_PAUSED)

    probes = {"slack": lambda: runtime.runner.connected, "scheduler": scheduler_ok, "store": store_reachable}
    # Liveness: this process still works, whatever Slack, the store or the leader lock do.
    live = {"slack_runtime": lambda: runtime.runner.alive, "scheduler": lambda: scheduler.aps.running}
    info = None
    if election is not None:
        # Facts, not probes: a database outage must not get a replica that still serves Slack restarted.
        info = lambda: {  # noqa: E731
            "role": election.role,
            "leader_lock": "reachable" if election.reachable else "unreachable",
        }
    host, port = parse_listen(settings.observability.listen)
    try:
        server = HealthServer(host, port, probes, info, live)
    except OSError as exc:
        raise ConfigError([f"observability.listen: cannot listen on {host}:{port}: {exc.strerror}"]) from None
    server.start()
    return server


def _notifier(settings: Settings, secrets: SlackSecrets) -> Notifier:
    """Alerts go to `[slack] channel`; without one they can only be logged."""
    from bot.monitor.notify import LogNotifier
    from bot.slack.client import build_client
    from commands.alerts import SlackNotifier

    channel = settings.slack.channel
    if channel is None:
        log.warning("slack: no channel is configured: monitor alerts are only logged")
        return LogNotifier()
    return SlackNotifier(build_client(settings.slack.api_url, secrets.bot_token), channel)


def _slack_error(exc: Exception) -> str:
    from slack_sdk.errors import SlackApiError

    if isinstance(exc, SlackApiError):
        return str(exc.response.get("error", "unknown error"))
    return str(exc).splitlines()[0]
