"""`atp-bot lab …`: start the local lab peers. Plugged into the CLI through the `atp_bot.cli` entry point.

`register` names `lab` in atp-bot's list and nothing more: its actions, and the peers they import (Samba,
the emulators, their web servers and crypto), are loaded only when `atp-bot lab …` runs, so that
`atp-bot --help` and every product command start without them.
"""

from __future__ import annotations

import argparse
from functools import partial
from typing import Any

HELP = "run the local lab (test peers) to try atp-bot without a real domain"


def register(commands: Any) -> None:
    lab = commands.add_parser("lab", help=HELP, add_help=False)
    lab.add_argument("-h", "--help", dest="lab_help", action="store_true", help="show the lab's actions")
    lab.add_argument("arguments", nargs=argparse.REMAINDER, help="ACTION and its arguments")
    lab.set_defaults(handler=partial(run, lab.prog))


def run(prog: str, args: argparse.Namespace) -> int:
    """Parse what follows `lab` with the full parser of its actions, then run the chosen one."""
    arguments = ["--help", *args.arguments] if args.lab_help else args.arguments
    lab_args = lab_parser(prog).parse_args(arguments, namespace=argparse.Namespace(**vars(args)))
    return int(lab_args.handler(lab_args))


def lab_parser(prog: str) -> argparse.ArgumentParser:
    from lab import ata_center, dc_cmd, demo, graph
    from lab.slack import cli as slack_cli
    from lab.winrm import cli as winrm_cli

    lab = argparse.ArgumentParser(prog=prog, description=HELP)
    actions = lab.add_subparsers(dest="lab_command", metavar="ACTION", required=True)
    dc_cmd.register(actions)
    demo.register(actions)
    winrm_cli.register(actions)
    slack_cli.register(actions)
    ata_center.register_cli(actions)
    graph.register_cli(actions)
    return lab
