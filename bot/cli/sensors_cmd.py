"""`atp-bot sensors`: every sensor, from Graph and `[[sensors]]`, with its generation and a verdict, and
the servers Graph says run none (sensor candidates)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from bot.cli import context
from bot.config.core import ConfigError

if TYPE_CHECKING:
    from bot.fleet import SensorRow


COLUMNS = (
    "SENSOR",
    "DOMAIN",
    "SOURCE",
    "TYPE",
    "VERSION",
    "GEN",
    "USES DSA",
    "HEALTH",
    "DEPLOYMENT",
    "WINRM",
    "VERDICT",
)


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "sensors", help="list every sensor (Graph and [[sensors]]) with its generation and health"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON list (one object per sensor)")
    parser.add_argument("--domain", metavar="D", help="only the sensors of this domain (DNS name)")
    parser.set_defaults(handler=run)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def render_table(rows: Sequence[SensorRow]) -> str:
    table: list[tuple[str, ...]] = [COLUMNS]
    for r in rows:
        cells = (r.name, r.domain, r.source, r.sensor_type, r.version, r.generation, r.uses_dsa)
        table.append(
            tuple(_cell(c) for c in (*cells, r.health_status, r.deployment_status, r.winrm, r.verdict))
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(c.ljust(widths[i]) for i, c in enumerate(row)).rstrip() for row in table)


def run(args: argparse.Namespace) -> int:
    from bot.fleet import (
        GraphFleet,
        build_rows,
        candidates_unread,
        check_hosts,
        fleet_exit_code,
        graph_unread,
        in_domain,
        listed_candidates,
        merge_fleet,
    )

    settings = context.load(args, contacts_sensors=True)
    if not settings.graph.discover_sensors and not settings.sensors:
        raise ConfigError(["no sensors to list: set [graph] discover_sensors = true or add [[sensors]]"])
    fleet = GraphFleet(settings)
    graph_sensors, graph_error = fleet.sensors()
    members = merge_fleet(settings, graph_sensors)
    if args.domain:
        members = [m for m in members if in_domain(m, args.domain)]
    rows = build_rows(members, check_hosts(settings, members))
    candidates = listed_candidates(fleet, graph_sensors, graph_error, args.domain)
    rows += candidates.rows
    if graph_error is not None:
        print(f"atp-bot: {graph_unread(graph_error)}", file=sys.stderr)
    if candidates.error is not None:
        print(f"atp-bot: {candidates_unread(candidates.error)}", file=sys.stderr)
    if args.json:
        print(json.dumps([r.model_dump(mode="json") for r in rows], indent=2))
    else:
        print(render_table(rows))
        for row in rows:
            for problem in row.problems:
                print(f"{row.name}: {problem}")
    return fleet_exit_code(rows, graph_error or candidates.error)
