"""What every subcommand needs first: the settings, logging, and a password read safely."""

from __future__ import annotations

import argparse
import getpass
import logging
import sys

from pydantic import SecretStr

from bot.cli.preflight import check_config_file
from bot.config import ConfigError, Settings, UsageError, insecure_settings, resolve_config_path
from bot.directory import password_problem
from bot.infra.logging_setup import configure_logging


def load(args: argparse.Namespace, *, service: bool = False) -> Settings:
    """Load the configuration named on the command line, check its files (a missing `ca_file` stops the
    command here, named), set up logging from it and warn about every insecure setting.
    """
    checked = check_config_file(resolve_config_path(args.config))
    if checked.findings.errors:
        raise ConfigError(checked.findings.errors)
    settings = checked.settings
    start_logging(args, settings, service=service)
    # What the environment lacks matters to the service; a shell may lack it without harm.
    environment = checked.findings.environment if service else []
    for warning in [*environment, *insecure_settings(settings)]:
        logging.getLogger("atp-bot").warning(warning)
    return settings


def start_logging(args: argparse.Namespace, settings: Settings, *, service: bool = False) -> None:
    """One-shot commands log warnings only (their output is the result) unless -v; a long-running
    `service` logs at the configured level."""
    level = "DEBUG" if args.verbose else settings.logging.level if service else "WARNING"
    configure_logging(level, settings.logging.format)


def add_password_source(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from standard input (one line) instead of a prompt",
    )


def read_password(
    args: argparse.Namespace, prompt: str = "Password: ", *, confirm: bool = False
) -> SecretStr:
    """Read a password from a no-echo TTY prompt or, with --password-stdin, from standard input.

    Never from argv: arguments are visible to every user of the machine. With `confirm`, a prompt asks
    twice and the two must match.
    """
    if args.password_stdin:
        line = sys.stdin.readline()
        value = line[:-1] if line.endswith("\n") else line
        value = value.removesuffix("\r")
    elif sys.stdin.isatty():
        value = getpass.getpass(prompt)
        if confirm and value != getpass.getpass("Confirm password: "):
            raise UsageError(["the two passwords do not match; nothing was tested or saved"])
    else:
        raise UsageError(["no terminal to prompt for the password: use --password-stdin"])
    problem = password_problem(value)
    if problem:
        raise UsageError([f"{problem} Nothing was tested or saved."])
    return SecretStr(value)
