"""`atp-bot`: the command-line face of atp-bot.

Each subcommand lives in its own module with a `register(subparsers)` function that adds its parser and
sets `handler` (a function of the parsed arguments returning an exit code). Other installed packages
contribute subcommands through the `atp_bot.cli` entry point group, the same way.
"""

from __future__ import annotations

import argparse
import logging
import resource
import sys
from collections.abc import Sequence
from functools import partial
from importlib.metadata import entry_points
from typing import Any

from bot import __version__
from bot.cli import (
    audit_cmd,
    check,
    config_cmd,
    dsa_cmd,
    gmsa_cmd,
    guard_cmd,
    health_cmd,
    portal_done_cmd,
    run,
    sensors_cmd,
    set_password,
    store_cmd,
    test_connection,
    verify_cmd,
)
from bot.cli.interrupt import INTERRUPTED, stopping_at_once
from bot.cli.output import escaped_output
from bot.config.core import ConfigError, UsageError
from bot.infra.dumpable import clear_dumpable
from bot.infra.exitcodes import ExitCode

log = logging.getLogger(__name__)

BUILTIN_COMMANDS = (
    run,
    health_cmd,
    test_connection,
    set_password,
    portal_done_cmd,
    check,
    config_cmd,
    store_cmd,
    audit_cmd,
    gmsa_cmd,
    guard_cmd,
    verify_cmd,
    sensors_cmd,
    dsa_cmd,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="atp-bot",
        description="Change and check the Defender for Identity / ATA directory service account password.",
        epilog="Exit codes: 0 ok, 1 a problem was found, 2 usage or configuration error, "
        "3 a peer could not be reached, 130 interrupted (Ctrl-C).",
    )
    parser.add_argument("--version", action="version", version=f"atp-bot {__version__}")
    parser.add_argument(
        "--config", metavar="PATH", help="configuration file (default: $ATP_BOT_CONFIG, else ./atp-bot.toml)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in BUILTIN_COMMANDS:
        registered = set(commands.choices)
        module.register(commands)
        if module is not run:  # `run` stops on its own signal handlers, gracefully
            for name in commands.choices.keys() - registered:
                commands.choices[name].set_defaults(stop_at_once=True)
    for plugin in entry_points(group="atp_bot.cli"):
        try:
            plugin.load()(commands)
        except ImportError as exc:
            log.debug("subcommand plugin %s unavailable: %s", plugin.name, exc)
            _not_installed(commands, plugin.name, str(exc))
    for name in OPTIONAL_PLUGINS.keys() - commands.choices.keys():
        _not_installed(commands, name, f"no {name!r} plugin in the atp_bot.cli entry points")
    _describe_commands(parser)
    return parser


def _describe_commands(parser: argparse.ArgumentParser) -> None:
    """Every (sub-)subcommand's `--help` opens with a description: its one-line help when it has none."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                command = action.choices[choice.dest]
                if command.description is None:
                    command.description = choice.help
                _describe_commands(command)


# Subcommands that other distributions plug in, and how to install each (the lab is atp-bot-lab, in lab/).
OPTIONAL_PLUGINS = {"lab": "pip install ./lab"}


def _not_installed(commands: Any, name: str, reason: str) -> None:
    """A plugin that is not installed (e.g. `pip install .` without the lab) still answers: how to
    install it, instead of argparse's bare `invalid choice`."""
    how = OPTIONAL_PLUGINS.get(name, f"pip install the distribution that provides {name!r}")
    parser = commands.add_parser(name, help=f"not installed: {how}", add_help=False)
    parser.add_argument("arguments", nargs=argparse.REMAINDER)
    parser.set_defaults(handler=partial(_explain_not_installed, name, how, reason))


def _explain_not_installed(name: str, how: str, reason: str, _args: argparse.Namespace) -> int:
    print(
        f"atp-bot: the {name} is not installed ({reason}). In the atp-bot source checkout: "
        f"{how} (or ./scripts/bootstrap, which also installs the system packages it needs)",
        file=sys.stderr,
    )
    return ExitCode.USAGE


def main(argv: Sequence[str] | None = None) -> int:
    # A core dump would hold whatever is in memory, passwords and tokens included: none, for any command.
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    with escaped_output():  # no peer text printed by any command can drive the terminal
        return _run(argv)


def _run(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    if not (sys.argv[1:] if argv is None else argv):  # like kubectl: no arguments, the help (exit 0)
        parser.print_help()
        return ExitCode.OK
    args = parser.parse_args(argv)
    # No process of the same user reads the secrets in our memory or initial environment (bot.infra.dumpable);
    # after parsing, so that `--help` and `--version`, which hold none, load nothing more.
    clear_dumpable()
    try:
        if getattr(args, "stop_at_once", False):
            with stopping_at_once():
                return int(args.handler(args))
        return int(args.handler(args))
    except ConfigError as exc:
        kind = "usage error" if isinstance(exc, UsageError) else "configuration error"
        for problem in exc.problems:
            print(f"atp-bot: {kind}: {problem}", file=sys.stderr)
        return ExitCode.USAGE
    except KeyboardInterrupt:  # a plugin's command, which handles its own waits
        print("atp-bot: interrupted, stopping", file=sys.stderr)
        return INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - report_failure logs what it does not recognise
        return report_failure(exc)


def report_failure(exc: Exception) -> int:
    """The exit code and one line for a command that failed other than by its configuration.

    Imported here, not at start: the store, the audit trail and the change path are what `atp-bot --help`
    and `atp-bot health` must not load (a store or audit error has loaded its own module already)."""
    from bot.audit import AuditError
    from bot.change.failures import one_line
    from bot.store import StoreError, store_exit_code

    if isinstance(exc, StoreError):
        print(f"atp-bot: store error: {exc.message}", file=sys.stderr)
        return store_exit_code(exc.reason)
    if isinstance(exc, AuditError):
        print(f"atp-bot: audit trail error: {exc}", file=sys.stderr)
        return ExitCode.PROBLEM
    # a bug or an unforeseen failure: one line, never a traceback
    log.debug("unexpected error", exc_info=exc)
    print(f"atp-bot: something went wrong: {one_line(exc)} (-v shows the details)", file=sys.stderr)
    return ExitCode.PROBLEM
