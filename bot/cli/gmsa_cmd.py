"""`atp-bot gmsa check|plan`: a gMSA directory service account, checked end to end, and the migration."""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

from bot.cli import context
from bot.config.core import ConfigError
from bot.infra.exitcodes import ExitCode

GROUP_NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9 _.-]{0,63}"


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "gmsa",
        help="check a gMSA directory service account, or print the migration to one",
        description="Group managed service accounts: what AD rotates and the sensors retrieve.",
    )
    actions = parser.add_subparsers(dest="gmsa_action", metavar="ACTION", required=True)
    check = actions.add_parser(
        "check",
        help="check the gMSA object, who may retrieve its password, the KDS root key and encryption types",
        description="Reads AD with the account's lookup account and reports each check as ok, problem or "
        "unknown, with the fix. The sensors: Graph's of the account's domain ([graph] discover_sensors) "
        "and [[sensors]]; unified 3.x sensors need no password. Exit 0 all ok, 1 a problem (or unknown), "
        "3 a peer unreachable (a DC, a sensor, Graph).",
    )
    check.add_argument("--account", metavar="ID", help='one account (default: every kind = "gmsa" account)')
    check.add_argument("--json", action="store_true", help="print the result as JSON")
    check.set_defaults(handler=run_check)
    plan = actions.add_parser(
        "plan",
        help="print the PowerShell that moves a user DSA to a gMSA (changes nothing)",
        description="Prints, without changing anything, what a domain admin runs to move the account's "
        "sensors to a gMSA: KDS root key, the group of the sensors' computers, the gMSA, the portal step, "
        "and which sensors are unified 3.x (Graph's version) and need no DSA. Exit 3: Graph unreachable.",
    )
    plan.add_argument("--account", required=True, metavar="ID", help="the account to move")
    plan.add_argument("--gmsa", required=True, metavar="NAME", help="the new gMSA's name (e.g. mdisvc)")
    # No default here: bot.gmsa's DEFAULT_GROUP is read when the plan runs (`--help` loads no gMSA code).
    plan.add_argument("--group", metavar="NAME", help="default: the plan's, MDI-gMSA-Sensors")
    plan.set_defaults(handler=run_plan)


def run_check(args: argparse.Namespace) -> int:
    from bot.fleet import GraphFleet
    from bot.gmsa import check_gmsa, describe, gmsa_accounts, report_exit_code, sensor_scope

    settings = context.load(args, contacts_sensors=True)
    fleet = GraphFleet(settings)  # one Graph read for every account
    reports = [
        check_gmsa(settings, account, sensor_scope(settings, account, fleet))
        for account in gmsa_accounts(settings, args.account)
    ]
    if args.json:
        documents = [r.as_json() for r in reports]
        print(json.dumps(documents[0] if len(documents) == 1 else documents, indent=2))
    else:
        print("\n".join(line for report in reports for line in describe(report)))
    return report_exit_code(reports)


def run_plan(args: argparse.Namespace) -> int:
    from bot.config import GMSA_NAME_PATTERN
    from bot.gmsa import DEFAULT_GROUP, already_gmsa, migration_plan, sensor_scope

    settings = context.load(args)
    account = settings.account(args.account)
    if account.kind == "gmsa":  # nothing to plan, and nothing to contact
        print(already_gmsa(account))
        return ExitCode.OK
    group = DEFAULT_GROUP if args.group is None else args.group
    if not re.fullmatch(GMSA_NAME_PATTERN, args.gmsa if args.gmsa.endswith("$") else f"{args.gmsa}$"):
        raise ConfigError([f"--gmsa {args.gmsa!r}: a gMSA name is 1 to 15 letters, digits, '.', '_' or '-'"])
    if not re.fullmatch(GROUP_NAME_PATTERN, group):
        raise ConfigError([f"--group {group!r}: use letters, digits, spaces, '.', '_' or '-' (64 at most)"])
    scope = sensor_scope(settings, account)
    print("\n".join(migration_plan(account, scope, args.gmsa, group)))
    if scope.graph_error is not None:
        print(f"atp-bot: Graph: {scope.graph_error}", file=sys.stderr)
        return ExitCode.UNREACHABLE
    return ExitCode.OK
