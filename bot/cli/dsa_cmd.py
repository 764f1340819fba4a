"""`atp-bot dsa status`: whether each directory service account is still needed or can be retired."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from bot.cli import context
from bot.infra.exitcodes import ExitCode

if TYPE_CHECKING:
    from bot.fleet import DsaStatus


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "dsa",
        help="the directory service accounts' retirement: which sensors still use each one",
        description="Directory service accounts (users and gMSAs) and the sensors that use them.",
    )
    actions = parser.add_subparsers(dest="dsa_action", metavar="ACTION", required=True)
    status = actions.add_parser(
        "status",
        help="for each account: the classic sensors that use it, the unified ones, and a verdict",
        description="Reads Graph's sensors ([graph] discover_sensors): the classic 2.x sensors of the "
        "account's domains use it, the unified 3.x ones do not. Verdict: needed (a classic sensor uses "
        "it), removable (every sensor of its domains is unified), unknown (Graph unreadable or not used, "
        "or a sensor's generation not told). Exit 0, 3 when a verdict is unknown.",
    )
    status.add_argument("--account", metavar="ID", help="one account (default: every account)")
    status.add_argument("--json", action="store_true", help='print {"accounts": [...]} as JSON')
    status.set_defaults(handler=run_status)


def render_text(statuses: Sequence[DsaStatus]) -> str:
    """One block per account: verdict, the sensors by generation, the next step."""
    blocks = []
    for s in statuses:
        domains = ", ".join(s.domains) or "domain unknown"
        blocks.append(
            "\n".join(
                (
                    f"{s.account} ({domains}): {s.verdict}",
                    f"  classic sensors (use it): {', '.join(s.classic_sensors) or '-'}",
                    f"  unified sensors: {', '.join(s.unified_sensors) or '-'}",
                    f"  next step: {s.next_step}",
                )
            )
        )
    return "\n\n".join(blocks)


def run_status(args: argparse.Namespace) -> int:
    from bot.fleet import GraphFleet, dsa_statuses

    settings = context.load(args)
    if args.account is not None:
        settings.account(args.account)  # an unknown id is a usage error before Graph is asked
    graph_sensors, graph_error = GraphFleet(settings).sensors()
    statuses = dsa_statuses(settings, graph_sensors, graph_error, args.account)
    if graph_error is not None:
        print(f"atp-bot: Graph's sensor list could not be read: {graph_error}", file=sys.stderr)
    if args.json:
        print(json.dumps({"accounts": [s.model_dump(mode="json") for s in statuses]}, indent=2))
    else:
        print(render_text(statuses))
    return ExitCode.UNREACHABLE if any(s.verdict == "unknown" for s in statuses) else ExitCode.OK
