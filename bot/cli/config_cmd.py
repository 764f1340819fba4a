"""`atp-bot config check`: validate a configuration file and summarise it without contacting anything."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from bot.cli import context
from bot.config.core import ConfigError, resolve_config_path
from bot.infra.exitcodes import ExitCode

if TYPE_CHECKING:
    from bot.config import Settings


def register(commands: Any) -> None:
    config = commands.add_parser("config", help="work with the configuration file")
    actions = config.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    check = actions.add_parser(
        "check", help="validate the configuration file and print a summary (contacts nothing)"
    )
    check.add_argument(
        "--strict",
        action="store_true",
        help="also fail when the environment lacks what the service needs: unset *_env variables, the "
        "Slack tokens of a [slack] face, secret files that others can read (for ExecStartPre and container "
        "start-up)",
    )
    check.set_defaults(handler=run_check)


def summary(settings: Settings) -> list[str]:
    from bot.infra.state_dir import default_state_dir

    lines = [f"state_dir: {settings.state_dir or default_state_dir()}", f"accounts: {len(settings.accounts)}"]
    for account in settings.accounts:
        tls = "verify" if account.tls_verify else "NOT VERIFIED"
        if account.ca_file:
            tls += f", CA {account.ca_file}"
        lines.append(f"  {account.id}: {account.username} (TLS {tls})")
        lines.extend(f"    - {url}" for url in account.domain_controllers)
        if account.kind == "gmsa":
            lines.append(f"    gMSA of {account.domain}, read as {account.lookup_username}")
        elif account.lookup_username:
            lines.append(f"    lockout pre-check as {account.lookup_username}")
    lines.append(f"sensors: {len(settings.sensors)}")
    lines.extend(f"  {s.name}: {s.kind} at {s.endpoint}" for s in settings.sensors)
    lines.append(f"store: {settings.store.backend}")
    if settings.slack_face:
        lines.append(f"slack: {settings.slack.mode} mode, channel {settings.slack.channel or '(not set)'}")
    else:
        lines.append("slack: not configured (no [slack] table: the command line only; atp-bot run refuses)")
    guard = settings.lockout_guard
    lines.append(
        f"lockout guard: at most {guard.max_rejections} rejected tests per {guard.window_minutes} minutes"
    )
    return lines


def run_check(args: argparse.Namespace) -> int:
    from bot.cli.preflight import check_config_file
    from bot.config import insecure_settings

    checked = check_config_file(resolve_config_path(args.config))
    settings, findings = checked.settings, checked.findings
    context.start_logging(args, settings)
    if args.strict:
        errors, warnings = findings.errors + findings.environment, []
    else:
        errors, warnings = findings.errors, [f"{w} (an error with --strict)" for w in findings.environment]
    for warning in [*warnings, *findings.notes, *insecure_settings(settings)]:
        print(f"atp-bot: warning: {warning}", file=sys.stderr)
    if errors:
        raise ConfigError(errors)
    print("configuration OK")
    for line in summary(settings):
        print(line)
    return ExitCode.OK
