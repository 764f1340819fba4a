"""`atp-bot run`: run the Slack bot until SIGINT/SIGTERM (Socket Mode or HTTP, per `[slack] mode`)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType
from typing import Any

from apscheduler.schedulers.base import STATE_RUNNING
from slack_bolt.error import BoltError
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.change import PasswordChanges, open_changes
from bot.cli import context
from bot.config import ConfigError, Settings, parse_listen
from bot.exitcodes import ExitCode
from bot.health import HealthServer
from bot.monitor.notify import LogNotifier, Notifier
from bot.monitor.runtime import MonitorRuntime
from bot.scheduler import Scheduler, start_scheduler
from bot.slack.client import build_client
from bot.slack.runtime import SlackRuntime, SlackUnreachable
from bot.slack.secrets import SlackSecrets, remove_from_environment
from commands.alerts import SlackNotifier
from commands.password import tell_interrupted

log = logging.getLogger(__name__)


def register(commands: Any) -> None:
    parser = commands.add_parser("run", help="run the Slack bot (Socket Mode or HTTP, per [slack] mode)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    settings = context.load(args, service=True)
    secrets = SlackSecrets.from_env(settings.slack)
    remove_from_environment()
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("signal %s: stopping", signal.Signals(signum).name)
        stop.set()

    changes = open_changes(settings)
    # Before Slack takes requests, so that no new change of an account resolves its leftover first.
    recoveries = changes.recover_interrupted()
    # The scheduler starts paused: its jobs run once Slack is connected, so a first alert can be posted.
    scheduler = start_scheduler(
        MonitorRuntime.create(settings, _notifier(settings, secrets), changes), paused=True
    )
    try:
        runtime = SlackRuntime(
            settings, secrets=secrets, audit=changes.audit, changes=changes, scheduler=scheduler
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
    health = None
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        scheduler.aps.resume()
        runtime.services.submit(tell_interrupted, runtime.services, recoveries)
        health = _health_server(settings, runtime, scheduler, changes)
        log.info("atp-bot is running in %s mode", settings.slack.mode)
        # Python runs signal handlers in this thread only: waking up now and then makes sure it does even
        # when the kernel delivered SIGTERM to another thread (seen under load: the bot never stopped).
        while not stop.wait(timeout=1.0):
            pass
    finally:
        if health is not None:
            health.stop()
        runtime.stop()
        scheduler.shutdown()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return ExitCode.OK


def _health_server(
    settings: Settings, runtime: SlackRuntime, scheduler: Scheduler, changes: PasswordChanges
) -> HealthServer | None:
    """`/healthz` and `/metrics` on `[observability] listen`, when set."""
    if settings.observability.listen is None:
        return None
    account = settings.accounts[0].id

    def store_reachable() -> bool:
        changes.store.metadata(account)  # raises StoreError when the store cannot be read
        return True

    probes = {
        "slack": lambda: runtime.runner.connected,
        "scheduler": lambda: scheduler.aps.state == STATE_RUNNING,
        "store": store_reachable,
    }
    host, port = parse_listen(settings.observability.listen)
    try:
        server = HealthServer(host, port, probes)
    except OSError as exc:
        raise ConfigError([f"observability.listen: cannot listen on {host}:{port}: {exc.strerror}"]) from None
    server.start()
    return server


def _notifier(settings: Settings, secrets: SlackSecrets) -> Notifier:
    """Alerts go to `[slack] channel`; without one they can only be logged."""
    channel = settings.slack.channel
    if channel is None:
        log.warning("slack: no channel is configured: monitor alerts are only logged")
        return LogNotifier()
    return SlackNotifier(build_client(settings.slack.api_url, secrets.bot_token), channel)


def _slack_error(exc: Exception) -> str:
    if isinstance(exc, SlackApiError):
        return str(exc.response.get("error", "unknown error"))
    return str(exc).splitlines()[0]
