"""`atp-bot check`: check every sensor (services, credential errors in the log) over WinRM."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from bot.cli import context
from bot.config import ConfigError, Settings
from bot.exitcodes import ExitCode
from bot.sensor_inventory import GraphFleet, fleet_exit_code, rows_for_results
from bot.sensors import SensorResult, check_sensors

UNIFIED_SENSOR = "SenseIdentity running (unified sensor: no directory service account)"


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "check", help="check the sensors: services running, credential errors in their error log"
    )
    parser.add_argument(
        "--sensor", action="append", metavar="NAME", help="check only this sensor (repeatable; default: all)"
    )
    parser.add_argument(
        "--since",
        metavar="TIME",
        help="look for credential errors since this ISO 8601 time with a zone, e.g. 2026-01-31T08:00:00Z "
        "(default: sensor_checks.default_window_minutes ago)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON list (one object per sensor)")
    parser.set_defaults(handler=run)


def parse_since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError([f"--since: not an ISO 8601 time: {value!r}"]) from None
    if when.tzinfo is None:
        raise ConfigError([f"--since: add a time zone (e.g. Z or +01:00): {value!r}"])
    return when


def exit_code(results: Sequence[SensorResult]) -> ExitCode:
    """3 if any sensor could not be checked, else 1 if any has a problem, else 0."""
    if any(not r.reachable for r in results):
        return ExitCode.UNREACHABLE
    if any(not r.healthy for r in results):
        return ExitCode.PROBLEM
    return ExitCode.OK


def _errors_cell(result: SensorResult) -> str:
    errors = result.credential_errors
    if result.log_error:
        return f"log: {result.log_error}"
    if errors is None:
        return "-"
    if not errors.count:
        return "0"
    last = errors.last.strftime("%Y-%m-%d %H:%M:%SZ") if errors.last else "time unknown"
    return f"{errors.count} (last {last})"


def render_table(results: Sequence[SensorResult]) -> str:
    rows = [("SENSOR", "STATUS", "SERVICES", "CREDENTIAL ERRORS", "DURATION")]
    for r in results:
        if r.failure:
            status = "UNREACHABLE"
            services = f"{r.failure.kind}: {r.failure.detail}"
            errors = "-"
        elif r.generation == "3":
            status, services, errors = "ok", UNIFIED_SENSOR, "-"
        else:
            status = "ok" if r.healthy else "PROBLEM"
            services = ", ".join(f"{s.name} {s.state}" for s in r.services)
            errors = _errors_cell(r)
        rows.append((r.name, status, services, errors, f"{r.duration:.2f}s"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = [
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])) + "  " + row[-1] for row in rows
    ]
    return "\n".join(line.rstrip() for line in lines)


def run(args: argparse.Namespace) -> int:
    settings = context.load(args)
    since = parse_since(args.since)
    if not settings.sensors:
        raise ConfigError(["no [[sensors]] are configured"])
    total = len(args.sensor) if args.sensor else len(settings.sensors)
    done = 0
    progress = sys.stderr.isatty()

    def report(result: SensorResult) -> None:
        nonlocal done
        done += 1
        if progress:
            state = "unreachable" if not result.reachable else "ok" if result.healthy else "problem"
            print(f"\r[{done}/{total}] {result.name}: {state}\x1b[K", end="", file=sys.stderr, flush=True)

    results = check_sensors(settings, args.sensor, since=since, on_result=report)
    if progress:
        print("\r\x1b[K", end="", file=sys.stderr, flush=True)
    if settings.graph.discover_sensors:
        return _print_with_graph(settings, results, args.json)
    if args.json:
        print(json.dumps([r.to_json() for r in results], indent=2))
    else:
        print(render_table(results))
        for r in results:
            for problem in r.problems:
                print(f"{r.name}: {problem}")
    return exit_code(results)


def _print_with_graph(settings: Settings, results: Sequence[SensorResult], as_json: bool) -> int:
    """The WinRM results beside Graph's health, deployment status and open issues of each sensor."""
    graph, graph_error = GraphFleet(settings).sensors()
    rows = rows_for_results(settings, results, graph)
    if graph_error is not None:
        print(f"atp-bot: Graph: {graph_error}", file=sys.stderr)
    if as_json:
        graph_fields = ("generation", "uses_dsa", "health_status", "deployment_status", "open_health_issues")
        extra = [row.model_dump(include={*graph_fields, "verdict"}) for row in rows]
        print(json.dumps([r.to_json() | e for r, e in zip(results, extra, strict=True)], indent=2))
    else:
        print(render_table(results))
        for row in rows:
            for problem in row.problems:
                print(f"{row.name}: {problem}")
    return fleet_exit_code(rows, graph_error)
