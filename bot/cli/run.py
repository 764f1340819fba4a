"""`atp-bot run`: run the Slack bot until SIGINT/SIGTERM (Socket Mode or HTTP, per `[slack] mode`)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType
from typing import Any

from slack_bolt.error import BoltError
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.change import open_changes
from bot.cli import context
from bot.exitcodes import ExitCode
from bot.slack.runtime import SlackRuntime, SlackUnreachable
from bot.slack.secrets import SlackSecrets, remove_from_environment

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

    try:
        changes = open_changes(settings)
        runtime = SlackRuntime(settings, secrets=secrets, audit=changes.audit, changes=changes)
        runtime.start()
    except (SlackApiError, BoltError) as exc:
        print(f"atp-bot: Slack refused to start the bot: {_slack_error(exc)}", file=sys.stderr)
        return ExitCode.USAGE if "invalid_auth" in str(exc) else ExitCode.UNREACHABLE
    except (SlackUnreachable, SlackClientError, OSError) as exc:
        print(f"atp-bot: cannot reach Slack at {settings.slack.api_url}: {exc}", file=sys.stderr)
        return ExitCode.UNREACHABLE
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        log.info("atp-bot is running in %s mode", settings.slack.mode)
        stop.wait()
    finally:
        runtime.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return ExitCode.OK


def _slack_error(exc: Exception) -> str:
    if isinstance(exc, SlackApiError):
        return str(exc.response.get("error", "unknown error"))
    return str(exc).splitlines()[0]
