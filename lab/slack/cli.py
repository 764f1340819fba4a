"""`atp-bot lab slack`: run the Slack emulator standalone and type `/atp …` commands as a user."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from bot.infra.exitcodes import ExitCode
from lab.slack.emulator import LAB_APP_TOKEN, LAB_BOT_TOKEN, LAB_SIGNING_SECRET, SlackEmulator
from lab.slack.socket_mode import NotConnected


def register(actions: Any) -> None:
    parser = actions.add_parser(
        "slack", help="run the Slack emulator (Web API + Socket Mode) and act as a Slack user"
    )
    parser.add_argument("--user", default="U0ALICE", help="the Slack user you act as (default U0ALICE)")
    parser.add_argument("--channel", default="C0OPS", help="the channel you type in (default C0OPS)")
    parser.add_argument(
        "--port", type=int, default=0, help="Web API port on 127.0.0.1 (default: any free port)"
    )
    parser.add_argument(
        "--request-url", metavar="URL", help="deliver to an HTTP-mode app at URL instead of over Socket Mode"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    with SlackEmulator(api_port=args.port) as emulator:
        emulator.request_url = args.request_url
        print(f"Slack Web API:      {emulator.api_url}")
        print(f"Socket Mode server: ws://127.0.0.1:{emulator.socket_port}/link/")
        print("Run the bot against it with, in its configuration, [slack] api_url = the Web API URL, and:")
        print(f"  SLACK_BOT_TOKEN={LAB_BOT_TOKEN} SLACK_APP_TOKEN={LAB_APP_TOKEN}")
        print(f"  SLACK_SIGNING_SECRET={LAB_SIGNING_SECRET}  (HTTP mode)")
        print(f"Then type commands as {args.user} in {args.channel}, e.g. `/atp help` (Ctrl-D to stop).")
        seen = 0
        for line in sys.stdin:
            command, _, text = line.strip().partition(" ")
            if not command:
                continue
            if not command.startswith("/"):
                print("type a slash command, e.g. /atp help")
                continue
            try:
                delivery = emulator.slash_command(text, user=args.user, channel=args.channel, command=command)
            except NotConnected:
                print("no app is connected over Socket Mode yet")
                continue
            print(f"ack ({delivery.latency * 1000:.0f} ms, HTTP {delivery.status}): {delivery.ack}")
            calls = emulator.calls()
            for call in calls[seen:]:
                print(f"  {call.method} {call.error or 'ok'} {call.args}")
            seen = len(calls)
    return ExitCode.OK
