"""What every subcommand needs first: the settings, logging, and a password read safely.

Every subcommand module imports this one at its top to register its parser, so what the functions need
is imported inside them: `atp-bot --help` loads none of it.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
from typing import TYPE_CHECKING

from bot.config.core import ConfigError, UsageError, resolve_config_path

if TYPE_CHECKING:
    from pydantic import SecretStr

    from bot.audit import AuditSink
    from bot.config import Settings


def load(args: argparse.Namespace, *, service: bool = False, contacts_sensors: bool = False) -> Settings:
    """Load the configuration named on the command line, check its files (a missing `ca_file` stops the
    command here, named), set up logging from it and warn about every insecure setting: the sensors'
    WinRM transport only for a command that contacts sensors (the service does), in one line per problem.
    Every secret the configuration names in the environment is taken out of it first (see
    bot.config.secret_env).
    """
    from bot.cli.preflight import check_config_file
    from bot.config import insecure_settings, sensor_transport_warnings
    from bot.config.secret_env import take_from_environment

    checked = check_config_file(resolve_config_path(args.config))
    if checked.findings.errors:
        raise ConfigError(checked.findings.errors)
    settings = checked.settings
    take_from_environment(settings.secret_env_names())
    start_logging(args, settings, service=service)
    # What the environment lacks matters to the service; a shell may lack it without harm.
    environment = checked.findings.environment if service else []
    transport = sensor_transport_warnings(settings) if service or contacts_sensors else []
    for warning in [*environment, *insecure_settings(settings, sensors=False), *transport]:
        logging.getLogger("atp-bot").warning(warning)
    return settings


def start_logging(args: argparse.Namespace, settings: Settings, *, service: bool = False) -> None:
    """One-shot commands log warnings only (their output is the result) unless -v; a long-running
    `service` logs at the configured level."""
    from bot.infra.logging_setup import configure_logging

    level = "DEBUG" if args.verbose else settings.logging.level if service else "WARNING"
    quiet = not (service or args.verbose)  # a person reads the warnings (-v: times, every record)
    configure_logging(level, settings.logging.format, tracebacks=not quiet, person=quiet)


def add_password_source(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from standard input (one line) instead of a prompt",
    )


class InputRefused(UsageError):
    """The password typed or piped in was refused before anything was tested (exit 2; the faces audit it)."""


NOTHING_DONE = "Nothing was tested or saved."


def read_password(
    args: argparse.Namespace, prompt: str = "Password: ", *, confirm: bool = False
) -> SecretStr:
    """Read a password from a no-echo TTY prompt or, with --password-stdin, from standard input.

    Never from argv: arguments are visible to every user of the machine. With `confirm`, a prompt asks
    twice and the two must match. Whatever is refused raises InputRefused before anything is sent.
    """
    from pydantic import SecretStr

    from bot.directory.password_policy import NOT_TEXT, password_problem

    if not args.password_stdin and not sys.stdin.isatty():
        raise UsageError(["no terminal to prompt for the password: use --password-stdin"])
    try:
        value = _stdin_line() if args.password_stdin else getpass.getpass(prompt)
        problem = password_problem(value)
        if problem:
            raise InputRefused([f"{problem} {NOTHING_DONE}"])
        if confirm and not args.password_stdin and value != getpass.getpass("Confirm password: "):
            raise InputRefused([f"The two passwords do not match. {NOTHING_DONE}"])
    except EOFError:  # Ctrl-D at a prompt
        raise InputRefused([f"No password entered. {NOTHING_DONE}"]) from None
    except UnicodeDecodeError:  # never chained: the exception holds the raw bytes
        raise InputRefused([f"{NOT_TEXT} {NOTHING_DONE}"]) from None
    return SecretStr(value)


def _stdin_line() -> str:
    """One line of standard input, decoded as strict UTF-8 (Python's own decoding may turn stray bytes
    into lone surrogates, which would only fail later, inside the LDAP bind)."""
    line = sys.stdin.buffer.readline().decode("utf-8")
    return line.removesuffix("\n").removesuffix("\r")


def read_audited_password(
    args: argparse.Namespace,
    audit: AuditSink,
    action: str,
    account_id: str,
    prompt: str,
    *,
    confirm: bool = False,
) -> SecretStr:
    """`read_password`, auditing a refusal the way the Slack face does (never with what was typed)."""
    from bot.audit import AuditEvent, AuditOutcome, cli_actor, record_or_log
    from bot.directory.password_policy import INVALID_INPUT

    try:
        return read_password(args, prompt, confirm=confirm)
    except InputRefused as refused:
        refusal = AuditEvent(
            actor=cli_actor(),
            action=action,
            account=account_id,
            outcome=AuditOutcome.REFUSED,
            reason=INVALID_INPUT,
            detail="; ".join(refused.problems),
        )
        record_or_log(audit, refusal)
        raise
