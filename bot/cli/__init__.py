"""`atp-bot`: the command-line face of atp-bot.

Each subcommand lives in its own module with a `register(subparsers)` function that adds its parser and
sets `handler` (a function of the parsed arguments returning an exit code). Other installed packages
contribute subcommands through the `atp_bot.cli` entry point group, the same way.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points

from bot import __version__
from bot.audit import AuditError
from bot.cli import (
    audit_cmd,
    check,
    config_cmd,
    health_cmd,
    run,
    sensors_cmd,
    set_password,
    store_cmd,
    test_connection,
)
from bot.config import ConfigError
from bot.exitcodes import ExitCode
from bot.store import StoreError

log = logging.getLogger(__name__)

BUILTIN_COMMANDS = (
    run,
    health_cmd,
    test_connection,
    set_password,
    check,
    config_cmd,
    store_cmd,
    audit_cmd,
    sensors_cmd,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="atp-bot",
        description="Change and check the Defender for Identity / ATA directory service account password.",
        epilog="Exit codes: 0 ok, 1 a problem was found, 2 usage or configuration error, "
        "3 a peer could not be reached.",
    )
    parser.add_argument("--version", action="version", version=f"atp-bot {__version__}")
    parser.add_argument(
        "--config", metavar="PATH", help="configuration file (default: $ATP_BOT_CONFIG, else ./atp-bot.toml)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in BUILTIN_COMMANDS:
        module.register(commands)
    for plugin in entry_points(group="atp_bot.cli"):
        try:
            plugin.load()(commands)
        except ImportError as exc:
            log.debug("subcommand plugin %s unavailable: %s", plugin.name, exc)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"atp-bot: configuration error: {problem}", file=sys.stderr)
        return ExitCode.USAGE
    except StoreError as exc:
        print(f"atp-bot: store error: {exc.message}", file=sys.stderr)
        return ExitCode.USAGE if exc.reason in ("config", "key") else ExitCode.PROBLEM
    except AuditError as exc:
        print(f"atp-bot: audit trail error: {exc}", file=sys.stderr)
        return ExitCode.PROBLEM
    except KeyboardInterrupt:
        print("atp-bot: interrupted", file=sys.stderr)
        return 130
