"""`atp-bot lab slack`: the Slack emulator and a prompt to act in it as a Slack user. Alone it waits for an
app to connect; with `--bot` it starts the whole lab (Samba AD DC, emulated sensors, the real atp-bot)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from bot.infra.exitcodes import ExitCode
from bot.infra.logging_setup import configure_logging
from lab.slack.console import SlackConsole
from lab.slack.emulator import LAB_APP_TOKEN, LAB_BOT_TOKEN, LAB_SIGNING_SECRET, SlackEmulator
from lab.stack import (
    LAB_PEER_ERRORS,
    SENSOR_ACCOUNT,
    SlackLab,
    cannot_start,
    lab_directory,
    running_slack_lab,
)

STOPPED_SENSOR = "dc02"


def register(actions: Any) -> None:
    parser = actions.add_parser(
        "slack",
        help="act as a Slack user against the Slack emulator: /atp commands, modals, buttons",
        description="Run the Slack emulator (Web API + Socket Mode) and a prompt where you act as a Slack "
        "user: type /atp commands, see modals and messages rendered as text, fill and submit modals, click "
        "buttons. With --bot, also start the lab's Samba AD DC, emulated sensors and atp-bot (needs root).",
    )
    parser.add_argument("--user", default="U0ALICE", help="the Slack user you act as (default U0ALICE)")
    parser.add_argument("--channel", default="C0OPS", help="the channel you type in (default C0OPS)")
    parser.add_argument(
        "--port", type=int, default=0, help="Web API port on 127.0.0.1 (default: any free port)"
    )
    parser.add_argument(
        "--request-url", metavar="URL", help="deliver to an HTTP-mode app at URL instead of over Socket Mode"
    )
    parser.add_argument(
        "--bot",
        action="store_true",
        help="also start the lab (Samba AD DC, emulated sensors) and atp-bot connected to the emulator",
    )
    parser.add_argument(
        "--dir",
        type=Path,
        metavar="DIR",
        help="with --bot: keep the lab's files (config, lab passwords, state) in DIR (default: a temporary "
        "directory, removed when you quit)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.bot:
        return _with_bot(args)
    if args.dir is not None:
        print("atp-bot lab slack: --dir goes with --bot (the lab's files)", file=sys.stderr)
        return ExitCode.USAGE
    with SlackEmulator(api_port=args.port) as emulator:
        emulator.request_url = args.request_url
        print(f"Slack Web API:      {emulator.api_url}")
        print(f"Socket Mode server: ws://127.0.0.1:{emulator.socket_port}/link/")
        print("Run the bot against it with, in its configuration, [slack] api_url = the Web API URL, and:")
        print(f"  SLACK_BOT_TOKEN={LAB_BOT_TOKEN} SLACK_APP_TOKEN={LAB_APP_TOKEN}")
        print(f"  SLACK_SIGNING_SECRET={LAB_SIGNING_SECRET}  (HTTP mode)")
        _console(emulator, args)
    return ExitCode.OK


def _with_bot(args: argparse.Namespace) -> int:
    if args.port or args.request_url:
        print("atp-bot lab slack: --port and --request-url do not go with --bot", file=sys.stderr)
        return ExitCode.USAGE
    configure_logging("DEBUG" if args.verbose else "WARNING")
    reason = cannot_start()
    if reason:
        print(f"atp-bot lab slack: cannot start the lab: {reason}", file=sys.stderr)
        return ExitCode.UNREACHABLE
    print("Starting the lab: a Samba AD DC, emulated sensors, the Slack emulator, and atp-bot…", flush=True)
    try:
        with (
            lab_directory(args.dir, keep=False) as directory,
            running_slack_lab(directory, monitor=True) as lab,
        ):
            _raise_an_alert(lab)
            print(_lab_summary(lab, kept=args.dir is not None), flush=True)
            _console(lab.slack, args)
    except LAB_PEER_ERRORS as exc:
        print(f"atp-bot lab slack: cannot start the lab: {exc}", file=sys.stderr)
        return ExitCode.UNREACHABLE
    return ExitCode.OK


def _raise_an_alert(lab: SlackLab) -> None:
    """Stop a sensor's service and run the monitor once, so its alert (with buttons) is there at once."""
    lab.sensors.host(STOPPED_SENSOR).set_service("AATPSensor", "Stopped")
    if lab.scheduler is not None:
        lab.scheduler.run_cycle_now()


def _lab_summary(lab: SlackLab, *, kept: bool) -> str:
    removed = "" if kept else " (removed when you quit)"
    return "\n".join(
        [
            f"AD DC:    {lab.domain.dc.ldaps_url} (realm {lab.domain.dc.realm})",
            f"sensors:  {', '.join(lab.sensors.hosts)} of account {SENSOR_ACCOUNT}, over WinRM/NTLM; "
            f"{STOPPED_SENSOR}'s AATPSensor service is stopped on purpose: see the monitor's alert",
            f"files:    {lab.directory}{removed}",
            f"The lab accounts' current passwords are in {lab.directory / 'lab-passwords.txt'}:",
            f"the right one for /atp password {SENSOR_ACCOUNT} is on its `{SENSOR_ACCOUNT}` line.",
        ]
    )


def _console(emulator: SlackEmulator, args: argparse.Namespace) -> None:
    print(
        f"You are {args.user} in #{args.channel}: type /atp help, /atp password, or help (Ctrl-D quits).",
        flush=True,
    )
    SlackConsole(emulator, user=args.user, channel=args.channel, stdin=sys.stdin, stdout=sys.stdout).run()
