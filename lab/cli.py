"""`atp-bot lab …`: start the local lab peers. Plugged into the CLI through the `atp_bot.cli` entry point."""

from __future__ import annotations

from typing import Any

from lab import ata_center, dc_cmd, demo, graph
from lab.slack import cli as slack_cli
from lab.winrm import cli as winrm_cli


def register(commands: Any) -> None:
    lab = commands.add_parser(
        "lab", help="run the local lab (test peers) to try atp-bot without a real domain"
    )
    actions = lab.add_subparsers(dest="lab_command", metavar="ACTION", required=True)
    dc_cmd.register(actions)
    demo.register(actions)
    winrm_cli.register(actions)
    slack_cli.register(actions)
    ata_center.register_cli(actions)
    graph.register_cli(actions)
